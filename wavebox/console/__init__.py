"""The telnet-style console client protocol and the client program."""
