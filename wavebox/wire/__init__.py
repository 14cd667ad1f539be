"""The Wave federation protocol buffers and the conversion between them and the model."""
