"""
What the ``wavebox`` commands share: the server's own options, spelt and
checked exactly as ``twistd wavebox`` spells and checks them (one table,
:data:`wavebox.config.OPTIONS`), and the one way to turn them into the
server's :class:`~wavebox.config.Config`.  A command names the options it
takes; it never declares them again.
"""

import argparse
import sys

from wavebox import config as wconfig


def _checked(option):
    """argparse ``type``: refuse a bad value naming the flag, keep the text for load()."""
    def check(text):
        try:
            option.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e))
        return text
    check.__name__ = option.key
    return check


def server_options(*names, spelling=None):
    """
    A parent parser (``argparse.ArgumentParser(parents=[...])``) holding the
    server options ``names`` (their command-line names, e.g. ``"data-dir"``).
    ``spelling`` gives a command's own flag for an option where the server's
    would read oddly there (``wavebox check --timeout`` for ``dns-timeout``).
    """
    known = {o.name: o for o in wconfig.OPTIONS}
    spelling = spelling or {}
    parser = argparse.ArgumentParser(add_help=False)
    for name in names:
        option = known[name]
        flags = ["--" + spelling.get(name, name)]
        if option.short:
            flags.append("-" + option.short)
        default = option.default
        if isinstance(default, bool):
            default = "yes" if default else "no"
        text = option.help + (" [the server's default: %s]" % (default,)
                              if default not in (None, [], "") else "")
        parser.add_argument(*flags, dest=option.key, type=_checked(option),
                            action="append" if option.repeatable else "store",
                            metavar=option.key.upper(), help=text.replace("%", "%%"))
    return parser


def load_config(args, need_domain=False, **given):
    """
    The server's configuration as a command sees it: the flags the command
    took (``args``, from a parser with :func:`server_options`) over the
    config file (``--config``, else ``$WAVEBOX_CONFIG``, else
    ``/etc/wavebox/wavebox.conf``: as the server finds it) over the defaults, validated as the server
    validates it.  ``given`` adds values the command worked out itself.
    Raises :class:`~wavebox.config.ConfigError`.
    """
    values = dict(given)
    for option in wconfig.OPTIONS:
        value = getattr(args, option.key, None)
        if value is not None:
            values[option.key] = value
    return wconfig.discover(values, need_domain=need_domain)


def fail(command, message, status=2):
    """One line on stderr, ``wavebox COMMAND: message``; the exit status."""
    sys.stderr.write("wavebox %s: %s\n" % (command, message))
    return status


def server_or_store(config, command, create=False, **arguments):
    """
    Run an admin command (:mod:`wavebox.admin`) as the operator expects:
    through the running server's admin socket when it answers, else on the
    store itself, under the store lock so that no server starts meanwhile.
    The command's result; raises :class:`wavebox.admin.AdminError` with the
    operator's one line.
    """
    from wavebox import admin
    path = admin.socket_path(config)
    if path:
        try:
            return admin.ask(path, command, **arguments)
        except admin.NotRunning:
            pass
    return on_store(config, lambda store: admin.StoreCommands(store, config).table()[command](
        **arguments), create=create)


def on_store(config, work, create=False):
    """``work(store)`` (a Deferred) on the server's store, locked; made only if ``create``."""
    import os

    from twisted.internet import defer, task

    from wavebox import admin
    from wavebox.store import StoreError, open_store, store_path
    from wavebox.store.lock import StoreLocked, acquire

    path = store_path(config.store, config.data_dir)
    if path is not None and not os.path.exists(path) and not create:
        raise admin.AdminError("no store at %s (give the server's --config, or --data-dir "
                               "and --store)" % (path,))
    try:
        lock = acquire(config.store, config.data_dir)
    except StoreLocked as e:
        raise admin.AdminError(
            "%s, but its admin socket %s does not answer (is admin_socket off in its "
            "config?)" % (e, admin.socket_path(config) or "(none)"))
    outcome = {}

    @defer.inlineCallbacks
    def run(reactor):
        store = open_store(config.store, config.data_dir, reactor=reactor)
        try:
            outcome["result"] = yield work(store)
        except (admin.AdminError, StoreError) as e:
            outcome["error"] = str(e)
        finally:
            yield store.close()

    try:
        task.react(run)
    except SystemExit:
        pass
    finally:
        if lock is not None:
            lock.release()
    if "error" in outcome:
        raise admin.AdminError(outcome["error"])
    if "result" not in outcome:
        raise admin.AdminError("the store could not be used (see above)")
    return outcome["result"]
