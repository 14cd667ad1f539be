"""
The XML parser of every XMPP stream we read (S2S and the XEP-0114
component): expat, restricted as RFC 6120 section 11.1 requires, with the
stanza size and nesting limits counted where the bytes are.

Why not ``domish.elementStream()``: it accepts a DTD with internal entities
(11.1 says a server MUST NOT), so a 569-byte payload of nested entities
expands without limit before any stanza handler runs; and it joins text by
copying (``c[-1] = c[-1] + text``), so text that arrives in many pieces (each
``\\n`` is one, and so is each expanded entity) costs quadratic time while
the reactor waits.  Whitespace-only chunks were not counted either, so a
stanza of spaces escaped the size limit.

:class:`ElementStream` has ``domish``'s interface (``DocumentStartEvent``,
``ElementEvent``, ``DocumentEndEvent``, ``parse(bytes)``) and builds the same
``domish.Element`` trees, but:

- a DOCTYPE (so any internal subset and entity declaration), a processing
  instruction or a comment raises :class:`RestrictedXML` as soon as expat
  reports its start, before anything in it is expanded; an undeclared
  entity reference is expat's own error (``not-well-formed``);
- every byte of a stanza counts toward ``max_stanza_size``, markup, text and
  whitespace alike, including a start tag expat is still buffering; only
  whitespace between stanzas (keepalives) is free.  Over the limit:
  :class:`StanzaTooLarge`;
- elements nest at most ``max_depth`` levels inside a stanza
  (:class:`TooDeep`), far below Python's recursion limit, which the
  serialiser (``toXml``) and every recursive walk of a stanza reach;
- text is collected in a list and joined once per run, in linear time;
  expat's own buffering (``buffer_text``) hands it over in large pieces.

Each refusal is a :class:`XMLRefused` (a ``domish.ParserError``) whose
``condition`` is the stream error to answer with.  After one, the parser is
finished: the stream must close.

:class:`RestrictedXmlStream` is Twisted's jabber ``XmlStream`` on this
parser, for streams without a session of ours (the component); it answers a
refusal with that stream error and closes.
"""

import pyexpat

from twisted.logger import Logger
from twisted.python import failure
from twisted.words.protocols.jabber import error, xmlstream
from twisted.words.xish import domish

#: Bytes of one stanza once the peer is authenticated (Prosody's s2s default).
MAX_STANZA_SIZE = 512 * 1024
#: Bytes of one stanza (and of the stream header) before authentication:
#: what comes before STARTTLS and dialback is small (Prosody: 10 KB).
MAX_UNAUTHENTICATED_STANZA_SIZE = 10 * 1024
#: Levels of elements in one stanza, the stanza itself being level 1.
MAX_DEPTH = 100
#: Elements in one stanza (what ``domish`` allowed; each costs memory).
MAX_ELEMENTS = 100000
#: Characters expat gathers before it hands text over.
_TEXT_BUFFER = 64 * 1024

log = Logger()


class XMLRefused(domish.ParserError):
    """Input we refuse to parse further; ``condition`` is the stream error (RFC 6120 4.9.3)."""

    condition = "not-well-formed"


class RestrictedXML(XMLRefused):
    """A DTD, entity declaration, processing instruction or comment (RFC 6120 11.1)."""

    condition = "restricted-xml"


class StanzaTooLarge(XMLRefused):
    """More bytes in one stanza than the limit (RFC 6120 4.9.3.17 names size limits)."""

    condition = "policy-violation"


class TooDeep(XMLRefused):
    """Elements nested deeper, or more of them, than one stanza may have."""

    condition = "policy-violation"


class ElementStream:
    """``domish.elementStream()``'s interface on a restricted expat (see the module)."""

    def __init__(self, max_stanza_size=MAX_STANZA_SIZE, max_depth=MAX_DEPTH,
                 max_elements=MAX_ELEMENTS):
        self.DocumentStartEvent = None
        self.ElementEvent = None
        self.DocumentEndEvent = None
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self.max_elements = max_elements
        parser = pyexpat.ParserCreate("UTF-8", " ")
        parser.buffer_text = True
        parser.buffer_size = _TEXT_BUFFER
        parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        parser.StartNamespaceDeclHandler = self._namespace_start
        parser.EndNamespaceDeclHandler = self._namespace_end
        parser.StartDoctypeDeclHandler = self._doctype
        parser.EntityDeclHandler = self._entity
        parser.ExternalEntityRefHandler = self._entity
        parser.ProcessingInstructionHandler = self._instruction
        parser.CommentHandler = self._comment
        self.parser = parser
        self.fed = 0                # bytes given to parse()
        self.mark = 0               # where what counts toward the limit starts
        self.depth = 0              # 0: before the header; 1: in the stream; 2: a stanza
        self.elements = 0
        self.current = None         # the element text goes to
        self.pieces = []            # its text not yet joined
        self._default_uris = [""]
        self._prefixes = {}

    # feeding ---------------------------------------------------------------------

    def parse(self, data):
        self.fed += len(data)
        try:
            self.parser.Parse(data)
        except pyexpat.ExpatError as e:
            raise domish.ParserError(str(e))
        # A start tag expat is still buffering has reported nothing yet.
        self._check()

    @property
    def pending(self):
        """Bytes of the stanza (or header) in progress; 0 between stanzas."""
        return self.fed - self.mark

    def _check(self):
        if self.fed - self.mark > self.max_stanza_size:
            what = "stanza" if self.depth else "stream header"
            raise StanzaTooLarge("%s larger than %d bytes" % (what, self.max_stanza_size))

    # refusals (RFC 6120 11.1) ----------------------------------------------------

    def _doctype(self, name, *rest):
        raise RestrictedXML("a DTD is not allowed in XMPP")

    def _entity(self, *args):
        raise RestrictedXML("entity declarations are not allowed in XMPP")

    def _instruction(self, target, data):
        raise RestrictedXML("processing instructions are not allowed in XMPP")

    def _comment(self, data):
        raise RestrictedXML("comments are not allowed in XMPP")

    # elements --------------------------------------------------------------------

    def _flush(self):
        if self.pieces:
            text = self.pieces[0] if len(self.pieces) == 1 else "".join(self.pieces)
            self.pieces = []
            self.current.children.append(text)

    def _start(self, name, attributes):
        if self.depth == 1:
            self.mark = self.parser.CurrentByteIndex        # a stanza starts here
        else:
            self._check()
        uri, _, local = name.rpartition(" ")
        for key in [k for k in attributes if " " in k]:
            attribute_uri, _, attribute = key.rpartition(" ")
            attributes[(attribute_uri, attribute)] = attributes.pop(key)
        element = domish.Element((uri, local), self._default_uris[-1], attributes,
                                 self._prefixes)
        self._prefixes = {}
        self.depth += 1
        if self.depth == 1:
            self.DocumentStartEvent(element)
            return
        if self.depth - 1 > self.max_depth:
            raise TooDeep("elements nested deeper than %d levels" % (self.max_depth,))
        self.elements += 1
        if self.elements > self.max_elements:
            raise TooDeep("more than %d elements in one stanza" % (self.max_elements,))
        if self.current is not None:
            self._flush()
            self.current.children.append(element)
            element.parent = self.current
        self.current = element

    def _end(self, name):
        self.depth -= 1
        if self.depth == 0:
            self.DocumentEndEvent()
            return
        self._flush()
        element = self.current
        if self.depth == 1:
            self.current = None
            self.elements = 0
            self.mark = self.parser.CurrentByteIndex        # the stanza is done
            self.ElementEvent(element)
        else:
            self.current = element.parent

    def _text(self, text):
        if self.current is None:
            # Between stanzas (whitespace keepalives): not kept, not counted.
            self.mark = self.parser.CurrentByteIndex
            return
        self.pieces.append(text)
        self._check()

    def _namespace_start(self, prefix, uri):
        if prefix is None:
            self._default_uris.append(uri)
        else:
            self._prefixes[prefix] = uri

    def _namespace_end(self, prefix):
        if prefix is None:
            self._default_uris.pop()


class RestrictedXmlStream(xmlstream.XmlStream):
    """
    Twisted's jabber ``XmlStream`` on :class:`ElementStream`.  A refusal is
    answered with its stream error, logged once, and the connection closes.
    """

    max_stanza_size = MAX_STANZA_SIZE
    max_depth = MAX_DEPTH
    refused = None

    def _initializeStream(self):
        stream = ElementStream(self.max_stanza_size, self.max_depth)
        stream.DocumentStartEvent = self.onDocumentStart
        stream.ElementEvent = self.onElement
        stream.DocumentEndEvent = self.onDocumentEnd
        self.stream = stream

    def dataReceived(self, data):
        if self.refused is not None:
            return
        try:
            if self.rawDataInFn:
                self.rawDataInFn(data)
            self.stream.parse(data)
        except XMLRefused as e:
            self.refused = e.condition
            peer = self.transport.getPeer()
            log.warn("XMPP stream {host}:{port}: stream error <{condition}/>: {why}",
                     host=getattr(peer, "host", "?"), port=getattr(peer, "port", 0),
                     condition=e.condition, why=str(e))
            self.sendStreamError(error.StreamError(e.condition, text=str(e)))
        except domish.ParserError:
            self.refused = "not-well-formed"
            self.dispatch(failure.Failure(), xmlstream.STREAM_ERROR_EVENT)
            self.transport.loseConnection()
