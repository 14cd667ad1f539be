"""
Wave, wavelet and participant identifiers, and the ``wave://`` wavelet-name
URI (wave protocol notes section 3; WIAB ``IdURIEncoderDecoder``,
``URIEncoderDecoder``/``JavaUrlCodec``, ``IdConstants``, ``IdGeneratorImpl``).

The URI is the one place where an id's spelling is fixed byte for byte: the
version-zero history hash of a wavelet *is* its URI's UTF-8 bytes (section
4), so ``WaveletName.uri`` must write exactly what the Java servers write,
including the ``java.net.URLEncoder`` quirks (a space becomes ``+``).
"""

import re
import secrets
import unicodedata
from dataclasses import dataclass

import idna

from wavebox.model.errors import InvalidId, InvalidParticipantId

WAVE_URI_SCHEME = "wave"
URI_PREFIX = WAVE_URI_SCHEME + "://"

#: The token separator inside local ids (``w+abc``, ``conv+root``).
TOKEN_SEPARATOR = "+"
#: The escape character of SimplePrefixEscaper (``~!``, ``~+``, ``~~``).
ESCAPE = "~"
#: Separates the wave domain from the wave id in a URI path, when written.
WAVE_DOMAIN_SEPARATOR = "!"

WAVE_PREFIX = "w"
CONVERSATION_WAVELET_PREFIX = "conv"
CONVERSATION_ROOT_WAVELET = "conv+root"
USER_DATA_WAVELET_PREFIX = "user"
BLIP_PREFIX = "b"
MANIFEST_DOCUMENT_ID = "conversation"

#: The web-safe base64 alphabet of WIAB id tokens (IdGeneratorImpl).
WEB64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# RFC 3986 pchar minus the percent-encoded form: left alone by the encoder.
_PCHAR = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    ":@!$&'()*+,;=-._~"
)
_HEX = "0123456789ABCDEF"
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")

# A domain as the ids use it: DNS labels (letters, digits, '-', '_'), dot
# separated, optionally with a trailing port (test servers use one).  The
# URI writes domains unescaped, so anything else would make an unparseable
# URI.
_DOMAIN_RE = re.compile(
    r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*(?::[0-9]{1,5})?$"
)


def check_domain(domain, what="domain"):
    """Raise InvalidId unless ``domain`` can be written in a wave URI host part."""
    if not isinstance(domain, str):
        raise InvalidId(f"{what} must be a string, not {type(domain).__name__}")
    if not domain:
        raise InvalidId(f"{what} is empty")
    if len(domain) > 253 or not _DOMAIN_RE.match(domain):
        raise InvalidId(f"{what} {domain!r} is not a valid domain name")
    return domain


def _check_local_id(local_id, what):
    if not isinstance(local_id, str):
        raise InvalidId(f"{what} must be a string, not {type(local_id).__name__}")
    if not local_id:
        raise InvalidId(f"{what} is empty")
    for i, ch in enumerate(local_id):
        if "\ud800" <= ch <= "\udfff":
            raise InvalidId(f"{what} {local_id!r} has a lone surrogate at index {i}")
        if ch == "\ufffd":
            # It would percent-encode fine but be refused when read back.
            raise InvalidId(f"{what} {local_id!r} contains U+FFFD at index {i}")
    return local_id


def _split_unescaped(text, separator):
    """Split on ``separator`` where not escaped by ``~`` (SimplePrefixEscaper
    ``splitWithoutUnescaping``): the pieces keep their escapes."""
    pieces = []
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == ESCAPE:
            i += 2
            continue
        if ch == separator:
            pieces.append(text[start:i])
            start = i + 1
        i += 1
    pieces.append(text[start:])
    return pieces


# --- percent-encoding (URIEncoderDecoder with JavaUrlCodec) -------------------

def encode_local_id(local_id):
    """
    Percent-encode a local id as WIAB does: pchar characters stay, every run
    of other characters goes through ``java.net.URLEncoder`` (UTF-8, upper
    case ``%XX``, and a space becomes ``+``).
    """
    out = []
    for ch in local_id:
        if ch in _PCHAR:
            out.append(ch)
        elif ch == " ":
            out.append("+")
        else:
            try:
                data = ch.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidId(f"local id {local_id!r} is not valid UTF-16 (lone surrogate)")
            out.extend("%" + _HEX[b >> 4] + _HEX[b & 15] for b in data)
    return "".join(out)


def decode_local_id(encoded, where="URI"):
    """
    Undo ``encode_local_id``: ``+`` stays a ``+`` (WIAB turns it into ``%2B``
    before URL-decoding), ``%XX`` sequences are UTF-8, and a result with
    invalid UTF-8 (U+FFFD) is refused.
    """
    out = []
    pending = bytearray()
    i = 0
    n = len(encoded)
    while i < n:
        ch = encoded[i]
        if ch == "%":
            hexpair = encoded[i + 1:i + 3]
            if len(hexpair) != 2 or not all(h in _HEXDIGITS for h in hexpair):
                raise InvalidId(
                    f"bad percent escape {encoded[i:i + 3]!r} at offset {i} of "
                    f"{encoded!r} in {where}")
            pending.append(int(hexpair, 16))
            i += 3
            continue
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
            pending.clear()
        out.append(ch)
        i += 1
    if pending:
        out.append(pending.decode("utf-8", errors="replace"))
    decoded = "".join(out)
    if "\ufffd" in decoded:
        raise InvalidId(f"{encoded!r} in {where} does not decode to valid UTF-8")
    return decoded


# --- ids -----------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class WaveId:
    """A wave: the domain that created it and a local id such as ``w+abc``."""

    domain: str
    id: str

    def __post_init__(self):
        check_domain(self.domain, "wave id domain")
        _check_local_id(self.id, "wave id")
        # An unescaped '!' would be read back as the wave-domain separator.
        if len(_split_unescaped(self.id, WAVE_DOMAIN_SEPARATOR)) != 1:
            raise InvalidId(f"wave id {self.id!r} contains an unescaped '!'")

    def __str__(self):
        return f"{self.domain}/{self.id}"

    def serialise(self):
        """The waveid-spec form ``domain/localid`` (never used on the federation wire)."""
        return f"{self.domain}/{self.id}"


@dataclass(frozen=True, order=True)
class WaveletId:
    """A wavelet inside a wave: the hosting domain and a local id such as ``conv+root``."""

    domain: str
    id: str

    def __post_init__(self):
        check_domain(self.domain, "wavelet id domain")
        _check_local_id(self.id, "wavelet id")

    def __str__(self):
        return f"{self.domain}/{self.id}"

    @property
    def is_conversation_root(self):
        return self.id == CONVERSATION_ROOT_WAVELET

    @property
    def is_user_data(self):
        return self.id.startswith(USER_DATA_WAVELET_PREFIX + TOKEN_SEPARATOR)


@dataclass(frozen=True, order=True)
class WaveletName:
    """The global name of a wavelet: its wave id and its wavelet id."""

    wave_id: WaveId
    wavelet_id: WaveletId

    def __post_init__(self):
        if not isinstance(self.wave_id, WaveId):
            raise InvalidId(f"wave_id must be a WaveId, not {type(self.wave_id).__name__}")
        if not isinstance(self.wavelet_id, WaveletId):
            raise InvalidId(
                f"wavelet_id must be a WaveletId, not {type(self.wavelet_id).__name__}")

    @classmethod
    def of(cls, wave_domain, wave_id, wavelet_domain, wavelet_id):
        return cls(WaveId(wave_domain, wave_id), WaveletId(wavelet_domain, wavelet_id))

    @property
    def hosting_domain(self):
        """The domain whose server holds the authoritative history."""
        return self.wavelet_id.domain

    @property
    def uri(self):
        """``wave://<wavelet domain>/[<wave domain>!]<wave id>/<wavelet id>``."""
        wave_domain = self.wave_id.domain
        prefix = "" if wave_domain == self.wavelet_id.domain else wave_domain + WAVE_DOMAIN_SEPARATOR
        return (URI_PREFIX + self.wavelet_id.domain + "/" + prefix
                + encode_local_id(self.wave_id.id) + "/"
                + encode_local_id(self.wavelet_id.id))

    def to_uri(self):
        return self.uri

    @classmethod
    def from_uri(cls, uri):
        """Parse a ``wave://`` URI; raises InvalidId saying what is wrong and where."""
        if not isinstance(uri, str):
            raise InvalidId(f"wavelet name URI must be a string, not {type(uri).__name__}")
        if not uri.startswith(URI_PREFIX):
            raise InvalidId(f"wavelet name URI {uri!r} does not start with {URI_PREFIX!r}")
        path = uri[len(URI_PREFIX):]
        parts = path.split("/")
        if len(parts) != 3 or not all(parts):
            raise InvalidId(
                f"wavelet name URI {uri!r}: expected <wavelet domain>/[<wave domain>!]"
                f"<wave id>/<wavelet id>, got {len(parts)} path part(s)")
        wavelet_domain, wave_part, wavelet_part = parts
        try:
            wavelet_id = WaveletId(wavelet_domain, decode_local_id(wavelet_part, uri))
            pieces = _split_unescaped(wave_part, WAVE_DOMAIN_SEPARATOR)
            if len(pieces) == 1:
                wave_id = WaveId(wavelet_domain, decode_local_id(pieces[0], uri))
            elif len(pieces) == 2:
                wave_id = WaveId(pieces[0], decode_local_id(pieces[1], uri))
            else:
                raise InvalidId(
                    f"wave part {wave_part!r} has {len(pieces) - 1} unescaped '!' "
                    f"(expected [<wave domain>!]<wave id>)")
        except InvalidId as e:
            raise InvalidId(f"wavelet name URI {uri!r}: {e}") from None
        return cls(wave_id, wavelet_id)

    def __str__(self):
        return self.uri


# --- participants ----------------------------------------------------------------

#: Longest local part (the ``user`` of ``user@domain``), in UTF-8 bytes: RFC
#: 5321's limit for a mailbox, which is what a participant address looks like.
MAX_LOCAL_PART_BYTES = 64
#: Longest domain, in characters of its ASCII (A-label) form (RFC 1035 2.3.4).
MAX_DOMAIN_LENGTH = 253
#: Longest label of a domain (RFC 1035 2.3.4).
MAX_LABEL_LENGTH = 63

# Never in a local part: the characters an XMPP localpart may not hold
# (RFC 7622 3.3.1) -- the address must also be safe to show and to write into
# XML and HTML -- and the '@' that ends it.
_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")
# Unicode general categories never in a local part: controls, format
# characters (the bidi controls among them), surrogates, private use,
# unassigned code points, and every kind of space or line separator.
_LOCAL_FORBIDDEN_CATEGORIES = {
    "Cc": "a control character", "Cf": "an invisible format character",
    "Cs": "a lone surrogate", "Co": "a private-use character",
    "Cn": "an unassigned code point", "Zs": "a space", "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
# The bidirectional controls (Unicode UAX #9): they reorder what is shown, so
# that "\u202ebob" displays as "bob" written backwards.  Named as such.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                           "\u2066\u2067\u2068\u2069")
_LDH_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
#: How much of a refused address an error message quotes.
_SHOWN = 40


def _shown(text):
    """``text`` quoted for a one-line error: escaped, and cut if long."""
    if len(text) <= _SHOWN:
        return repr(text)
    return "%r... (%d characters)" % (text[:_SHOWN], len(text))


def _char_name(ch):
    return "U+%04X" % (ord(ch),)


def _check_local_part(local):
    """Raise ValueError saying what is wrong with the local part (may be empty)."""
    if len(local.encode("utf-8", "surrogatepass")) > MAX_LOCAL_PART_BYTES:
        raise ValueError("the user name is longer than %d bytes" % (MAX_LOCAL_PART_BYTES,))
    for i, ch in enumerate(local):
        if ch in _BIDI_CONTROLS:
            raise ValueError("the user name has a bidi control character %s at index %d"
                             % (_char_name(ch), i))
        if ch in _LOCAL_FORBIDDEN:
            raise ValueError("the user name has %r at index %d (never allowed: %s)"
                             % (ch, i, " ".join(sorted(_LOCAL_FORBIDDEN - {"@"}))))
        what = _LOCAL_FORBIDDEN_CATEGORIES.get(unicodedata.category(ch))
        if what is None and ch.isspace():
            what = "a space"
        if what is not None:
            raise ValueError("the user name has %s %s at index %d" % (what, _char_name(ch), i))


def host_name(domain):
    """
    ``domain`` as a participant's domain: a DNS host name whose labels are
    letters, digits and inner hyphens (RFC 1123 2.1), in its ASCII form.  A
    domain written in Unicode is turned into its A-labels (IDNA 2008, RFC
    5891); an ``xn--`` label must be a valid A-label; an IP address is not a
    domain (RFC 3696 2: a top-level label is never all digits).  Raises
    ValueError saying what is wrong.
    """
    if not domain:
        raise ValueError("the domain is empty")
    for i, ch in enumerate(domain):
        if ch in _BIDI_CONTROLS:
            raise ValueError("the domain has a bidi control character %s at index %d"
                             % (_char_name(ch), i))
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=False).decode("ascii")
        except (idna.IDNAError, UnicodeError) as e:
            raise ValueError("the domain is not a valid IDNA host name (%s)" % (e,))
    if len(domain) > MAX_DOMAIN_LENGTH:
        raise ValueError("the domain is longer than %d characters" % (MAX_DOMAIN_LENGTH,))
    labels = domain.split(".")
    for label in labels:
        if not label:
            raise ValueError("the domain has an empty label")
        if len(label) > MAX_LABEL_LENGTH:
            raise ValueError("the domain has a label longer than %d characters"
                             % (MAX_LABEL_LENGTH,))
        if not _LDH_LABEL.match(label):
            bad = next((c for c in label if not (c.isalnum() and c.isascii()) and c != "-"),
                       None)
            if bad is not None:
                raise ValueError("the domain has %r, not a letter, digit or '-'" % (bad,))
            raise ValueError("the domain label %r begins or ends with '-'" % (label,))
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError) as e:
                raise ValueError("the domain label %r is not a valid A-label (%s)" % (label, e))
    if labels[-1].isdigit():
        raise ValueError("an IP address is not a domain")
    return domain


@dataclass(frozen=True, order=True, init=False)
class ParticipantId:
    """
    A participant address ``user@domain``.  Like WIAB's ``ParticipantId`` the
    whole address is lower-cased, so that every server agrees on equality of
    the participants named in operations.  Unlike WIAB, which checks only
    the '@', both halves are checked here, since every address in a wave
    also comes from the network and is shown to people: the user name by
    :func:`_check_local_part`, the domain by :func:`host_name`.  The local
    part may be empty: WIAB uses ``@domain`` for the shared domain
    participant; :meth:`user` refuses it where a person is meant.
    """

    address: str

    def __init__(self, address):
        if isinstance(address, ParticipantId):
            object.__setattr__(self, "address", address.address)
            return
        if not isinstance(address, str):
            raise InvalidParticipantId(
                f"participant address must be a string, not {type(address).__name__}")
        at = address.find("@")
        if at < 0:
            raise InvalidParticipantId(f"participant address {_shown(address)} has no '@'")
        if at != address.rfind("@"):
            raise InvalidParticipantId(
                f"participant address {_shown(address)} has more than one '@'")
        local, domain = address[:at].lower(), address[at + 1:].lower()
        if not domain:
            raise InvalidParticipantId(f"participant address {_shown(address)} has no domain")
        try:
            _check_local_part(local)
            domain = host_name(domain)
        except ValueError as e:
            raise InvalidParticipantId(f"participant address {_shown(address)}: {e}") from None
        object.__setattr__(self, "address", local + "@" + domain)

    @classmethod
    def user(cls, address):
        """A participant that is a person: as the constructor, and the user name not empty."""
        participant = cls(address)
        if not participant.name:
            raise InvalidParticipantId(
                f"participant address {_shown(str(address))} has no user name before the '@'")
        return participant

    @property
    def name(self):
        return self.address[:self.address.index("@")]

    @property
    def domain(self):
        return self.address[self.address.index("@") + 1:]

    def __str__(self):
        return self.address


# --- new ids ----------------------------------------------------------------------

def web64_counter_token(n):
    """A non-negative integer in WIAB's web64 digits, most significant first (0 is ``A``)."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"web64 counter must be a non-negative int, not {n!r}")
    digits = []
    while True:
        digits.append(WEB64_ALPHABET[n & 63])
        n >>= 6
        if not n:
            break
    return "".join(reversed(digits))


def random_token(bits=72, randbits=secrets.randbits):
    """``bits`` random bits as web64 characters (FedOne: 72 for waves, 48 for wavelets)."""
    chars = (bits + 5) // 6
    value = randbits(chars * 6)
    return "".join(WEB64_ALPHABET[(value >> (6 * i)) & 63] for i in range(chars))


class IdGenerator:
    """
    Makes new wave, wavelet and blip ids for one domain: ``<prefix>+<seed><counter>``
    as WIAB does, where the seed is random per generator so two processes (or a
    restart) do not collide, and the counter makes ids unique within it.
    """

    def __init__(self, domain, seed=None, randbits=secrets.randbits):
        self.domain = check_domain(domain)
        self.seed = random_token(48, randbits) if seed is None else seed
        self._counter = 0

    def _next_token(self):
        token = self.seed + web64_counter_token(self._counter)
        self._counter += 1
        return token

    def new_wave_id(self):
        return WaveId(self.domain, WAVE_PREFIX + TOKEN_SEPARATOR + self._next_token())

    def new_conversation_wavelet_id(self):
        return WaveletId(self.domain,
                         CONVERSATION_WAVELET_PREFIX + TOKEN_SEPARATOR + self._next_token())

    def new_blip_id(self):
        return BLIP_PREFIX + TOKEN_SEPARATOR + self._next_token()

    def new_conversation_root(self):
        """A new wave and its root conversation wavelet, both hosted here."""
        wave_id = self.new_wave_id()
        return WaveletName(wave_id, conversation_root_wavelet_id(self.domain))


def conversation_root_wavelet_id(domain):
    return WaveletId(domain, CONVERSATION_ROOT_WAVELET)


def user_data_wavelet_id(participant):
    """``user+<address>`` in the participant's own domain; never federated."""
    participant = ParticipantId(participant)
    return WaveletId(participant.domain,
                     USER_DATA_WAVELET_PREFIX + TOKEN_SEPARATOR + participant.address)


def is_blip_id(document_id):
    return document_id.startswith(BLIP_PREFIX + TOKEN_SEPARATOR)
