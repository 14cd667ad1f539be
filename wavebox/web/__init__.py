"""
The web client's side of wavebox (issue 14): the JSON shape of operations
and deltas on its WebSocket (``ops_json``), and the browser's own modules
under ``static/`` (the document operations, their compose and transform, and
the client side of the Wave/Jupiter protocol), shipped as package data.
"""
