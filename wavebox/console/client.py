"""
The console client (``wavebox console USER``, :mod:`wavebox.cli.console`),
the counterpart of FedOne's ``run-client-console.sh <username>`` (wave
protocol notes section 10.2).

It connects to the console port, asks for the password, logs in with
``/login`` (a refused login ends it, status 1), and then relays: what you
type goes to the server line by line (with readline editing and history when stdin is a terminal), and what the
server says is printed as soon as it arrives, above the line being typed.

Deliberately small and Twisted-free: one thread reads the socket, the main
thread reads the keyboard.  Everything it knows about waves is on the server.
"""

import getpass
import os
import signal
import socket
import sys
import threading

PROMPT = "> "


def read_password(prompt="Password: ", stdin=None):
    """getpass on a terminal; otherwise one line of stdin (for scripts)."""
    stdin = stdin or sys.stdin
    if stdin.isatty():
        return getpass.getpass(prompt)
    line = stdin.readline()
    if not line:
        raise SystemExit("wavebox console: no password on stdin")
    return line.rstrip("\r\n")


class Terminal:
    """
    Prints server lines without trampling the line being typed: with readline,
    the prompt and the half-typed text are drawn again under the new output.
    """

    def __init__(self, out, interactive):
        self.out = out
        self.interactive = interactive
        self.lock = threading.Lock()
        self.readline = None
        if interactive:
            try:
                import readline
                self.readline = readline
            except ImportError:
                pass

    def plain(self, text):
        """Before the prompt is up: a line, and no prompt drawn after it."""
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    def last(self, text):
        """A line in place of the prompt, which is not drawn again."""
        with self.lock:
            self.out.write(("\r\x1b[K" if self.readline is not None else "") + text + "\n")
            self.out.flush()

    def show(self, text):
        with self.lock:
            if self.readline is not None:
                typed = self.readline.get_line_buffer()
                self.out.write("\r\x1b[K" + text + "\n" + PROMPT + typed)
            else:
                self.out.write(text + "\n")
            self.out.flush()


def _login(sock, user, password, terminal):
    """
    Log in before relaying anything: (None, rest) once logged in, else
    (the server's error, b"").  A refused login ends the client, so that
    nobody is left at a prompt typing ``/login USER PASSWORD`` in clear.
    """
    sock.sendall(("/login %s %s" % (user, password)).encode("utf-8") + b"\r\n")
    buf = b""
    while True:
        try:
            data = sock.recv(65536)
        except OSError as e:
            return e.strerror or str(e), b""
        if not data:
            return "the server closed the connection", b""
        buf += data
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if line.startswith("logged in as "):
                terminal.plain(line)
                return None, buf
            if line.startswith("error: "):
                return line[len("error: "):], b""
            # The greeting tells telnet users to /login, which we just did.
            terminal.plain(line.split("  /login USER PASSWORD", 1)[0])


def _reader(sock, terminal, done, buf=b"", quitting=None):
    """The socket thread: print every server line; on EOF wake the main thread."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                text = raw.rstrip(b"\r").decode("utf-8", "replace")
                if quitting is not None and quitting.is_set():
                    terminal.plain(text)        # "bye": no prompt after it
                else:
                    terminal.show(text)
    except OSError:
        pass
    if buf:
        terminal.show(buf.decode("utf-8", "replace"))
    if quitting is not None and not quitting.is_set():
        # Without a word, a server that stopped looks like a client that hung.
        terminal.last("wavebox console: the server closed the connection")
    done.set()
    if terminal.interactive and not (quitting is not None and quitting.is_set()):
        # input() blocks in C; only a real signal gets the main thread out.
        # Not when the user is leaving: the main thread is past input() then,
        # and the signal would land in its clean-up as a traceback.
        os.kill(os.getpid(), signal.SIGINT)


def run(user, host, port):
    """The client's life: connect, log in as ``user``, relay; the exit status."""
    interactive = sys.stdin.isatty()
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError as e:
        sys.stderr.write("wavebox console: cannot connect to %s:%d: %s\n"
                         % (host, port, e.strerror or e))
        return 1
    sock.settimeout(None)
    try:
        password = read_password()
    except (EOFError, KeyboardInterrupt):
        sock.close()
        sys.stderr.write("\nwavebox console: cancelled\n")
        return 1
    terminal = Terminal(sys.stdout, interactive)
    refused, rest = _login(sock, user, password, terminal)
    if refused is not None:
        sock.close()
        sys.stderr.write("wavebox console: %s\n" % (refused,))
        return 1
    done = threading.Event()
    quitting = threading.Event()
    thread = threading.Thread(target=_reader, args=(sock, terminal, done, rest, quitting),
                              daemon=True)
    thread.start()

    def send(line):
        sock.sendall(line.encode("utf-8") + b"\r\n")

    said_quit = False
    try:
        while not done.is_set():
            try:
                line = input(PROMPT if interactive else "")
            except EOFError:
                if not done.is_set():
                    quitting.set()
                break
            if done.is_set():
                break
            if line.strip() == "/quit":
                quitting.set()
                said_quit = True
            send(line)
            if quitting.is_set():
                done.wait(5)
                break
    except KeyboardInterrupt:
        if not done.is_set():       # Ctrl-C, not the reader's wake-up call
            quitting.set()
    except OSError:
        pass
    finally:
        if not done.is_set():
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            done.wait(2)
        sock.close()
        if interactive and quitting.is_set() and not said_quit:
            sys.stdout.write("\n")     # Ctrl-D or Ctrl-C: end the prompt's line
    return 1 if done.is_set() and not quitting.is_set() else 0
