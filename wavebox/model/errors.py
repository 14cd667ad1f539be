"""
The exceptions of the wave model.  Every failure to parse or validate raises
one of these (never a bare IndexError or KeyError), and its message says what
is wrong and where.  Layers above map them to protocol errors.
"""


class ModelError(Exception):
    """Base of every wave model error."""


class InvalidId(ModelError):
    """A wave id, wavelet id, wavelet name, URI or participant id is malformed."""


class InvalidParticipantId(InvalidId):
    """A participant address is not ``user@domain``."""


class InvalidOperation(ModelError):
    """
    An operation is ill-formed, or does not fit the document or wavelet it is
    applied to.
    """


class IllFormedOperation(InvalidOperation):
    """
    A document operation breaks a well-formedness rule (wave protocol 6.3),
    whatever the document.  ``index`` is the offending component, ``rule`` a
    short name of the rule broken.
    """

    def __init__(self, message, index=None, rule=None):
        InvalidOperation.__init__(self, message)
        self.index = index
        self.rule = rule


class OperationMismatch(InvalidOperation):
    """
    A well-formed document operation does not fit the document (retain past
    the end, a delete that does not match, wrong old attributes...).
    """

    def __init__(self, message, index=None):
        InvalidOperation.__init__(self, message)
        self.index = index


class ComposeError(ModelError):
    """Two operations cannot be composed (the first's output is not the second's input)."""


class TransformError(ModelError):
    """Two operations cannot be transformed against each other (Java's TransformException)."""


class RemovedAuthorError(TransformError):
    """The author of a client operation was removed by a concurrent server operation."""


class InvalidHashedVersion(ModelError):
    """A hashed version is malformed, unknown, or its hash does not match the history."""


class InvalidDelta(ModelError):
    """A delta is malformed, empty, or cannot be applied to the wavelet (see the message)."""


class NotAParticipant(InvalidDelta):
    """A delta's author is not a participant of the wavelet (and does not add themself)."""


class WireError(ModelError):
    """Bytes or base64 from the network do not decode to the expected protocol message."""


class InvalidSignerInfo(ModelError):
    """A signer info (certificate chain description) is malformed."""


class InvalidSnapshot(ModelError):
    """A stored wavelet snapshot cannot be read back (corrupt, or from another format)."""
