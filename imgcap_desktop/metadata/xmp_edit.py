"""Minimal edits of an XMP packet: change imgcap's own properties and leave every other byte alone.

The packet is parsed with expat (no DOCTYPE, no entity declarations, no external entities: the same
guards as ``defusedxml``) into a light tree that remembers each element's byte offsets. An edit is
then a list of byte splices: replace the text of the ``x-default`` description, add or remove the
``dc:subject`` entries imgcap owns, and replace imgcap's own properties. Everything else, other
tools' values, their prefixes, quoting, white space and order, is copied through unchanged, which
is exactly what a photographer expects of a tool that "only adds a caption".

:func:`foreign_properties` flattens a packet into ``(path, value)`` pairs for every property that
is not imgcap's, so the caller can prove, on the bytes it is about to write, that every other
property's value is still what it was.
"""

from __future__ import annotations

import re
import xml.parsers.expat as expat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC = "http://purl.org/dc/elements/1.1/"
XMP = "http://ns.adobe.com/xap/1.0/"
XML = "http://www.w3.org/XML/1998/namespace"
IMGCAP = "http://ns.imgcap.app/1.0/"
X_DEFAULT = "x-default"

_START_TAG = re.compile(rb"""<[^\s/>]+(?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*(/?)>""")
_ATTRIBUTE = re.compile(rb"""\s+(?P<name>[^\s=/>]+)\s*=\s*(?:"[^"]*"|'[^']*')""")
_SPACE = b" \t\r\n"


class XmpError(ValueError):
    """The packet is not XML imgcap will edit; ``str(error)`` says why, without any file name."""


@dataclass(eq=False)
class Node:
    """One element of the packet, with where it lies in the bytes.

    ``start`` is the offset of its ``<``, ``content`` of the first byte after its start tag,
    ``content_end`` of its end tag's ``<`` (``== content`` for an empty element ``<a/>``) and
    ``end`` of the first byte after it.
    """

    uri: str
    local: str
    prefix: str | None
    attrs: list[tuple[str, str, str | None, str]]  # (uri, local, prefix, value) in document order
    start: int
    content: int = 0
    content_end: int = 0
    end: int = 0
    empty: bool = False
    children: list[Node] = field(default_factory=list)
    text: str = ""
    parent: Node | None = field(default=None, repr=False)
    namespaces: dict[str, str] = field(default_factory=dict)  # declared in its start tag: prefix -> uri

    def declares(self, prefix: str, uri: str) -> bool:
        """Whether ``prefix`` means ``uri`` inside this element (declared here or on an ancestor)."""
        node: Node | None = self
        while node is not None:
            if prefix in node.namespaces:
                return node.namespaces[prefix] == uri
            node = node.parent
        return False

    def is_(self, uri: str, local: str) -> bool:
        return self.uri == uri and self.local == local

    def attr(self, uri: str, local: str) -> str | None:
        for a_uri, a_local, _, value in self.attrs:
            if a_uri == uri and a_local == local:
                return value
        return None

    def find(self, uri: str, local: str) -> Node | None:
        return next((c for c in self.children if c.is_(uri, local)), None)

    @property
    def qname(self) -> str:
        return f"{self.prefix}:{self.local}" if self.prefix else self.local


def _split(name: str) -> tuple[str, str, str | None]:
    parts = name.split(" ")
    if len(parts) == 1:
        return "", parts[0], None
    if len(parts) == 2:
        return parts[0], parts[1], None
    return parts[0], parts[1], parts[2]


def parse(data: bytes) -> Node:
    """Parse a packet into a tree of :class:`Node` (the document element).

    Raises:
        XmpError: not well-formed, or declares a DOCTYPE or entities.
    """
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.namespace_prefixes = True
    parser.ordered_attributes = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Node] = []
    texts: list[list[str]] = []  # each open element's text, in pieces: joined once, at its end
    done: list[Node] = []
    declared: dict[str, str] = {}

    def refuse(*_args):
        raise XmpError("declares a DOCTYPE or entities, which imgcap refuses to read")

    def start(name, attributes):
        offset = parser.CurrentByteIndex
        tag = _START_TAG.match(data, offset)
        if tag is None:  # pragma: no cover - expat accepted it, so the pattern must too
            raise XmpError(f"cannot find the end of the tag at byte {offset}")
        attrs = [(*_split(attributes[i]), attributes[i + 1]) for i in range(0, len(attributes), 2)]
        node = Node(*_split(name), attrs, start=offset, content=tag.end(), empty=bool(tag.group(1)))
        node.namespaces = dict(declared)
        declared.clear()
        if stack:
            node.parent = stack[-1]
            stack[-1].children.append(node)
        stack.append(node)
        texts.append([])

    def namespace(prefix, uri):
        declared[prefix or ""] = uri or ""

    def end(_name):
        node = stack.pop()
        node.text = "".join(texts.pop())
        if node.empty:
            node.content_end = node.end = node.content
        else:
            node.content_end = parser.CurrentByteIndex
            node.end = data.index(b">", node.content_end) + 1
        if not stack:
            done.append(node)

    def text(chars):
        # Appended, not added to a string: ``node.text += chars`` copies the text so far for each
        # line of it, and a sidecar with a few MB of base64 thumbnail took a minute to read.
        if texts:
            texts[-1].append(chars)

    parser.StartElementHandler = start
    parser.StartNamespaceDeclHandler = namespace
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise XmpError(f"not well-formed XML ({expat.ErrorString(exc.code)}: "
                       f"line {exc.lineno}, column {exc.offset})") from None
    return done[0]


def rdf_root(root: Node) -> Node | None:
    """The ``rdf:RDF`` element: the document element itself or the first one inside it."""
    pending = [root]
    while pending:
        node = pending.pop(0)
        if node.is_(RDF, "RDF"):
            return node
        pending.extend(node.children)
    return None


def descriptions(rdf: Node) -> list[Node]:
    return [c for c in rdf.children if c.is_(RDF, "Description")]


# --- reading properties ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Property:
    """A top-level property: an attribute of an ``rdf:Description`` or one of its child elements."""

    uri: str
    local: str
    description: Node
    element: Node | None = None  # None: attribute form
    value: str = ""  # attribute form only


def properties(rdf: Node) -> list[Property]:
    """Every top-level property of every ``rdf:Description``, in document order."""
    found = []
    for desc in descriptions(rdf):
        for uri, local, _, value in desc.attrs:
            if uri not in (RDF, XML):
                found.append(Property(uri, local, desc, value=value))
        for child in desc.children:
            found.append(Property(child.uri, child.local, desc, element=child))
    return found


def items(element: Node) -> list[Node]:
    """The ``rdf:li`` of an array property (``<p><rdf:Bag><rdf:li>...``), in order."""
    for container in element.children:
        if container.uri == RDF and container.local in ("Bag", "Seq", "Alt"):
            return [li for li in container.children if li.is_(RDF, "li")]
    return []


def _container(element: Node) -> Node | None:
    return next((c for c in element.children if c.uri == RDF and c.local in ("Bag", "Seq", "Alt")), None)


def lang_of(li: Node) -> str:
    """An item's ``xml:lang``, lower-cased (``x-default`` where it has none)."""
    lang = li.attr(XML, "lang")
    return lang.lower() if lang else X_DEFAULT


def ambiguity(rdf: Node, uri: str, local: str) -> str | None:
    """Why programs may differ on a property's value (None where they agree): the property given
    twice, or, in a language alternative, an item without ``xml:lang`` or two items of one language.
    Not valid XMP; exiftool shows the last, and imgcap's edit of the first would not be seen there."""
    found = [p for p in properties(rdf) if (p.uri, p.local) == (uri, local)]
    if not found:
        return None
    element = found[0].element
    name = element.qname if element is not None else local
    if len(found) > 1:
        return f"{name} is given {len(found)} times"
    container = _container(element) if element is not None else None
    if container is None or container.local != "Alt":
        return None
    languages = [li.attr(XML, "lang") for li in container.children if li.is_(RDF, "li")]
    if None in languages:
        return f"an item of {name} has no language (xml:lang)"
    twice = next((lang for i, lang in enumerate(languages) if lang.lower() in map(str.lower, languages[:i])), None)
    return f"{name} has two {twice} items" if twice else None


def foreign_properties(rdf: Node, *, skip_subject: bool = True) -> list[tuple[str, str]]:
    """Every property value that is not imgcap's, as ``(path, value)`` pairs in document order.

    imgcap's are its own namespace, the ``x-default`` item of ``dc:description`` and (unless
    ``skip_subject`` is false) ``dc:subject``, whose other tools' entries the caller checks itself.
    Paths name struct fields, array positions and languages, so a changed, added, dropped or moved
    value makes the list differ.
    """
    pairs: list[tuple[str, str]] = []
    for prop in properties(rdf):
        name = f"{{{prop.uri}}}{prop.local}"
        if prop.uri == IMGCAP or (skip_subject and (prop.uri, prop.local) == (DC, "subject")):
            continue
        if prop.element is None:
            if (prop.uri, prop.local) != (DC, "description"):
                pairs.append((name, prop.value))
            continue
        if (prop.uri, prop.local) == (DC, "description"):
            for li in items(prop.element):
                if lang_of(li) != X_DEFAULT:
                    pairs.append((f"{name}[{lang_of(li)}]", li.text))
            continue
        _flatten(prop.element, name, pairs)
    return pairs


def _flatten(node: Node, path: str, pairs: list[tuple[str, str]]) -> None:
    for uri, local, _, value in node.attrs:
        pairs.append((f"{path}/@{{{uri}}}{local}", value))
    if not node.children:
        pairs.append((path, node.text))
        return
    for i, child in enumerate(node.children):
        _flatten(child, f"{path}/{{{child.uri}}}{child.local}[{i}]", pairs)


def subject(rdf: Node) -> list[str]:
    """The ``dc:subject`` entries (keywords), in order."""
    for prop in properties(rdf):
        if (prop.uri, prop.local) == (DC, "subject"):
            if prop.element is None:
                return [prop.value] if prop.value.strip() else []  # dc:subject="": none
            return [li.text for li in items(prop.element)]
    return []


def imgcap_value(rdf: Node, local: str) -> str | list[str] | None:
    """One imgcap property: its text, or its entries for an array; None when absent."""
    for prop in properties(rdf):
        if (prop.uri, prop.local) == (IMGCAP, local):
            if prop.element is None:
                return prop.value
            return [li.text for li in items(prop.element)] if _container(prop.element) else prop.element.text
    return None


# --- writing ---------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Element text or a double-quoted attribute value, so that a parser gives ``text`` back exactly."""
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
        .replace("\r", "&#xD;")
    )


@dataclass(frozen=True)
class Changes:
    """What to store.

    Attributes:
        caption: the new ``x-default`` description; empty removes it (and the property when no
            other language is left); None leaves the description as it is.
        imgcap: imgcap's properties, in order: a string, a list (written as an ``rdf:Bag``), or
            None to leave it out. Every imgcap property already in the packet is replaced.
        subject: the full new ``dc:subject`` list, or None to leave it alone. Entries already
            present are kept where they are; entries missing from it are removed; new ones are
            appended in the given order.
    """

    caption: str | None
    imgcap: Sequence[tuple[str, str | list[str] | None]]
    subject: Sequence[str] | None = None


@dataclass(frozen=True)
class _Names:
    """The prefixes the packet already gives RDF, Dublin Core and imgcap's namespace (or free ones).

    Adobe's XMP Toolkit, which Exiv2 (and so darktable and digiKam) parses with, refuses a whole
    packet in which one namespace has two prefixes ("Schema namespace URI and prefix mismatch"):
    what imgcap adds must use the packet's own prefix for each (``d:subject``, a default ``xmlns``).
    """

    rdf: str
    dc: str
    imgcap: str

    @classmethod
    def of(cls, root: Node) -> _Names:
        by_uri: dict[str, str] = {}
        taken: set[str] = set()
        stack = [root]
        while stack:
            node = stack.pop()
            for prefix, uri in node.namespaces.items():
                by_uri.setdefault(uri, prefix)
                taken.add(prefix)
            stack.extend(reversed(node.children))

        def pick(uri: str, wanted: str, *, default_ok: bool) -> str:
            prefix = by_uri.get(uri)
            if prefix is not None and (prefix or default_ok):
                return prefix
            free = wanted
            while free in taken:  # "dc" bound to another namespace in this packet
                free = f"{wanted}{len(free) - len(wanted) + 1}"
            return free

        # RDF's attributes (rdf:about) need a prefix; imgcap's own elements are found by prefix.
        return cls(pick(RDF, "rdf", default_ok=False), pick(DC, "dc", default_ok=True),
                   pick(IMGCAP, "imgcap", default_ok=False))

    @staticmethod
    def q(prefix: str, local: str) -> str:
        return f"{prefix}:{local}" if prefix else local

    @staticmethod
    def xmlns(prefix: str, uri: str) -> str:
        return f' xmlns:{prefix}="{uri}"' if prefix else f' xmlns="{uri}"'


def apply_changes(data: bytes, changes: Changes) -> bytes:
    """The packet with ``changes`` made and every other byte as it was.

    Raises:
        XmpError: the packet has no ``rdf:RDF``, or a property imgcap owns has a shape it will not
            rewrite (say, ``dc:subject`` that is not an array).
    """
    root = parse(data)
    rdf = rdf_root(root)
    if rdf is None:
        raise XmpError("XML but not XMP (no rdf:RDF)")
    descs = descriptions(rdf)
    about = descs[0].attr(RDF, "about") if descs else ""
    names = _Names.of(root)
    edits: list[tuple[int, int, bytes]] = []
    block: list[str] = []  # elements that go into a new rdf:Description of our own
    dropped: dict[int, tuple[Node, list]] = {}  # attributes to remove, per start tag (one edit each)

    # imgcap's own properties: drop every old one, write the new ones where the first old element was.
    home: Node | None = None
    home_at: int | None = None
    for desc in descs:
        attrs = [a for a in desc.attrs if a[0] == IMGCAP]
        if attrs:
            dropped.setdefault(id(desc), (desc, []))[1].extend(attrs)
        for child in desc.children:
            if child.uri == IMGCAP:
                if home is None and child.prefix:
                    home, home_at = desc, _leading_space(data, child.start)
                edits.append((_leading_space(data, child.start), child.end, b""))
    if home is not None:
        prefix = next(c.prefix for c in home.children if c.uri == IMGCAP and c.prefix)
        names = replace(names, imgcap=prefix)
        declare = not (home.declares(prefix, IMGCAP) and home.declares(names.rdf, RDF))
        ours = _imgcap_elements(changes.imgcap, names, declare=declare)
        edits.append((home_at, home_at, "".join(f"\n   {e}" for e in ours).encode()))
    else:
        block.extend(_imgcap_elements(changes.imgcap, names, declare=False))

    for wanted, local in ((changes.caption, "description"), (changes.subject, "subject")):
        reason = ambiguity(rdf, DC, local) if wanted is not None else None
        if reason:
            raise XmpError(f"{reason}, and programs differ on which one they show")
    if changes.caption is not None:
        _edit_description(data, rdf, changes.caption, edits, block, dropped, names)
    if changes.subject is not None:
        _edit_subject(data, rdf, list(changes.subject), edits, block, dropped, names)

    if block:
        body = "".join(f"\n   {e}" for e in block)
        description = names.q(names.rdf, "Description")
        new = (
            f'<{description} {names.q(names.rdf, "about")}="{escape(about or "")}"{names.xmlns(names.rdf, RDF)}'
            f'{names.xmlns(names.dc, DC)}{names.xmlns(names.imgcap, IMGCAP)}>{body}\n  </{description}>\n '
        ).encode()
        if rdf.empty:
            open_tag = data[rdf.start:rdf.content].rstrip(b">").rstrip(b"/").rstrip()
            edits.append((rdf.start, rdf.end, open_tag + b">\n  " + new + f"</{rdf.qname}>".encode()))
        else:
            edits.append((rdf.content_end, rdf.content_end, b" " + new))
    edits += [_without_attributes(data, node, attrs) for node, attrs in dropped.values()]
    if b"\r\n" in data and data.count(b"\r\n") == data.count(b"\n"):  # a Windows tool's file: its line ends
        edits = [(start, end, re.sub(rb"(?<!\r)\n", b"\r\n", new)) for start, end, new in edits]
    return _without_emptied_descriptions(descs, _splice(data, edits))


def _without_emptied_descriptions(before: list[Node], data: bytes) -> bytes:
    """``data`` without the ``rdf:Description`` elements that held something in ``before`` and hold
    nothing now (imgcap's own, its caption taken out): else each caption typed and taken out again
    would leave one more empty element behind. Descriptions keep their order (a new one is only
    ever appended), so the i-th before is the i-th now."""
    rdf = rdf_root(parse(data))
    now = descriptions(rdf) if rdf is not None else []
    gone = [(_leading_space(data, desc.start), desc.end, b"") for old, desc in zip(before, now)
            if not _empty(old) and _empty(desc)]
    return _splice(data, gone) if gone else data


def _empty(desc: Node) -> bool:
    return not desc.children and not desc.text.strip() and all(
        (uri, local) == (RDF, "about") for uri, local, _, _ in desc.attrs)


def _imgcap_elements(values: Iterable[tuple[str, str | list[str] | None]], names: _Names, *,
                     declare: bool) -> list[str]:
    # Inside another rdf:Description the prefixes may not be in scope once the old elements are
    # gone, so each element then declares what it uses.
    ns = names.xmlns(names.imgcap, IMGCAP) if declare else ""
    rdf_ns = names.xmlns(names.rdf, RDF) if declare else ""
    bag, li = names.q(names.rdf, "Bag"), names.q(names.rdf, "li")
    elements = []
    for local, value in values:
        if value is None:
            continue
        name = names.q(names.imgcap, local)
        if isinstance(value, str):
            elements.append(f"<{name}{ns}>{escape(value)}</{name}>")
        elif not value:  # none: an empty value, which readers take as such (an empty rdf:Bag is warned about)
            elements.append(f"<{name}{ns}/>")
        else:
            lis = "".join(f"<{li}>{escape(v)}</{li}>" for v in value)
            elements.append(f"<{name}{ns}><{bag}{rdf_ns}>{lis}</{bag}></{name}>")
    return elements


def _lang_alt(caption: str, names: _Names) -> str:
    """A new ``rdf:Alt`` holding the caption as its ``x-default`` item."""
    alt, li = names.q(names.rdf, "Alt"), names.q(names.rdf, "li")
    return (f'<{alt}{names.xmlns(names.rdf, RDF)}><{li} xml:lang="x-default">{escape(caption)}</{li}>'
            f'</{alt}>')


def _edit_description(data: bytes, rdf: Node, caption: str, edits: list, block: list[str], dropped: dict,
                      names: _Names) -> None:
    prop = next((p for p in properties(rdf) if (p.uri, p.local) == (DC, "description")), None)
    if prop is not None and prop.element is None:  # a plain string where a lang-alt belongs
        desc = prop.description
        dropped.setdefault(id(desc), (desc, []))[1].extend(a for a in desc.attrs if (a[0], a[1]) == (DC, "description"))
        prop = None
    if prop is None:
        if caption:
            name = names.q(names.dc, "description")
            block.append(f"<{name}{names.xmlns(names.dc, DC)}>{_lang_alt(caption, names)}</{name}>")
        return
    element = prop.element
    alt = _container(element)
    if alt is None:
        if element.children:
            raise XmpError("dc:description is not a language alternative")
        new = _lang_alt(caption, names)
        if not caption:
            edits.append((_leading_space(data, element.start), element.end, b""))
        elif element.empty:
            edits.append((element.start, element.end, f"<{element.qname}>{new}</{element.qname}>".encode()))
        else:
            edits.append((element.content, element.content_end, new.encode()))
        return
    lis = [li for li in alt.children if li.is_(RDF, "li")]
    default = next((li for li in lis if lang_of(li) == X_DEFAULT), None)
    li_name = f"{alt.prefix}:li" if alt.prefix else "li"
    if not caption:
        if default is None:
            return
        if len(lis) == 1:
            edits.append((_leading_space(data, element.start), element.end, b""))
        else:
            edits.append((_leading_space(data, default.start), default.end, b""))
        return
    if default is None:
        new = f'<{li_name} xml:lang="x-default">{escape(caption)}</{li_name}>'.encode()
        if alt.empty:
            edits.append((alt.start, alt.end, f"<{alt.qname}>".encode() + new + f"</{alt.qname}>".encode()))
        else:
            gap = data[_leading_space(data, lis[0].start):lis[0].start] if lis else b""
            edits.append((alt.content, alt.content, gap + new))
    elif default.empty or default.children:
        tag = data[default.start:default.content].rstrip(b">").rstrip(b"/").rstrip()
        edits.append((default.start, default.end,
                      tag + b">" + escape(caption).encode() + f"</{default.qname}>".encode()))
    else:
        edits.append((default.content, default.content_end, escape(caption).encode()))


def _edit_subject(data: bytes, rdf: Node, wanted: list[str], edits: list, block: list[str], dropped: dict,
                  names: _Names) -> None:
    prop = next((p for p in properties(rdf) if (p.uri, p.local) == (DC, "subject")), None)
    if prop is not None and prop.element is None and not prop.value.strip():
        # dc:subject="" (a tool's cleared field): no keywords, written as a list in its place.
        if not wanted:
            return
        desc = prop.description
        dropped.setdefault(id(desc), (desc, []))[1].extend(a for a in desc.attrs if (a[0], a[1]) == (DC, "subject"))
        prop = None
    bag_name, li_name = names.q(names.rdf, "Bag"), names.q(names.rdf, "li")
    entries = "".join(f"<{li_name}>{escape(w)}</{li_name}>" for w in wanted)
    new_bag = f"<{bag_name}{names.xmlns(names.rdf, RDF)}>{entries}</{bag_name}>"
    if prop is None:
        if wanted:
            name = names.q(names.dc, "subject")
            block.append(f"<{name}{names.xmlns(names.dc, DC)}>{new_bag}</{name}>")
        return
    element = prop.element
    if element is not None and not element.children and not element.text.strip():
        # <dc:subject/> (a tool's cleared field): no keywords; a list goes inside it.
        if wanted:
            tag = data[element.start:element.content].rstrip(b">").rstrip(b"/").rstrip()
            edits.append((element.start, element.end, tag + b">" + new_bag.encode() + f"</{element.qname}>".encode()))
        return
    bag = _container(element) if element is not None else None
    if element is None or bag is None or bag.local == "Alt" or any(li.children for li in items(element)):
        raise XmpError("dc:subject is not a list of keywords")
    lis = [li for li in bag.children if li.is_(RDF, "li")]
    present = [li.text for li in lis]
    if wanted == present:
        return
    keep, there = set(wanted), set(present)
    added = [w for w in dict.fromkeys(wanted) if w not in there]
    if not added and not any(li.text in keep for li in lis):
        # Every keyword goes: the whole property goes (its entries with it, in one edit).
        edits.append((_leading_space(data, element.start), element.end, b""))
        return
    for li in lis:
        if li.text not in keep:
            edits.append((_leading_space(data, li.start), li.end, b""))
    if not added:
        return
    li_name = f"{bag.prefix}:li" if bag.prefix else "li"
    # New entries go after the last one, indented like the first.
    gap = data[_leading_space(data, lis[0].start):lis[0].start].decode() if lis else ""
    new = "".join(f"{gap}<{li_name}>{escape(w)}</{li_name}>" for w in added).encode()
    if bag.empty:
        edits.append((bag.start, bag.end, f"<{bag.qname}>".encode() + new + f"</{bag.qname}>".encode()))
    else:
        at = lis[-1].end if lis else bag.content_end
        edits.append((at, at, new))


def _without_attributes(data: bytes, node: Node, attrs: list) -> tuple[int, int, bytes]:
    """The start tag without ``attrs``: read attribute by attribute, so that a name inside another
    attribute's value (``xmp:Label='see dc:description="x"'``) is never taken for one."""
    tag = data[node.start:node.content]
    names = {(f"{prefix}:{local}" if prefix else local).encode() for _, local, prefix, _ in attrs}
    name_end = re.match(rb"<[^\s/>]+", tag).end()
    kept, at = [tag[:name_end]], name_end
    for attribute in _ATTRIBUTE.finditer(tag, name_end):
        if attribute.start() != at:
            break  # the end of the attributes
        if attribute["name"] not in names:
            kept.append(attribute.group())
        at = attribute.end()
    kept.append(tag[at:])
    return node.start, node.content, b"".join(kept)


def _leading_space(data: bytes, offset: int) -> int:
    while offset > 0 and data[offset - 1] in _SPACE:
        offset -= 1
    return offset


def _splice(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    edits = sorted(edits, key=lambda e: (e[0], e[1]))
    out, at = [], 0
    for start, end, new in edits:
        if start < at:
            raise XmpError("overlapping edits")  # a bug of ours: refuse rather than corrupt
        out += [data[at:start], new]
        at = end
    out.append(data[at:])
    return b"".join(out)
