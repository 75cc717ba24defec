"""A corpus of other tools' XMP sidecars, for the fidelity tests and benchmarks/bench_sidecar_writers.py.

Most sidecars are written by exiftool itself, each with a different mix of namespaces (ratings,
labels, GPS, dates with time zones, flash structs, face regions, hierarchical subjects, Microsoft
Photo, MP1, Darwin Core, Lightroom develop settings, IPTC Core, MWG keywords); a few are typed by
hand the way other tools write values exiftool would normalise (GPS in degrees, minutes, seconds,
a flash struct with one field, a date in UTC with ``Z``, attribute-form properties).

:func:`raw_values` flattens a packet with ElementTree, independently of imgcap's own parser, into
the raw text of every property that is not imgcap's, so a test can prove them equal before and after.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

from PIL import Image

EXIFTOOL = shutil.which("exiftool")

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC = "http://purl.org/dc/elements/1.1/"
IMGCAP = "http://ns.imgcap.app/1.0/"

# One exiftool invocation per sidecar; each list is the tags of one sidecar.
EXIFTOOL_SIDECARS: dict[str, list[str]] = {
    "rating-labels-dates": [
        "-XMP-xmp:Rating=3", "-XMP-xmp:Label=Red", "-XMP-xmp:CreateDate=2021:06:01 10:34:56+02:00",
        "-XMP-xmp:ModifyDate=2021:06:01 10:34:56.123-05:00", "-XMP-photoshop:DateCreated=2021:06:01 10:34:56Z",
        "-XMP-xmp:MetadataDate=2021:06:02 00:00:00+09:30", "-XMP-dc:Description=A cat on a sofa",
        "-XMP-dc:Description-de=Eine Katze", "-XMP-dc:Subject=cat", "-XMP-dc:Subject=sofa",
    ],
    "gps": [
        "-XMP-exif:GPSLatitude=48 51 23.76 N", "-XMP-exif:GPSLongitude=2 17 40.20 E",
        "-XMP-exif:GPSAltitude=35.5", "-XMP-exif:GPSAltitudeRef=Above Sea Level",
        "-XMP-exif:GPSDateTime=2021:06:01 10:34:56Z", "-XMP-exif:GPSMapDatum=WGS-84",
        "-XMP-exif:GPSImgDirection=123.45", "-XMP-exif:GPSSpeed=3.2", "-XMP-dc:Subject=paris",
    ],
    "flash-exif": [
        "-XMP-exif:Flash={Fired=True}", "-XMP-exif:ExposureTime=1/250", "-XMP-exif:FNumber=5.6",
        "-XMP-exif:ISO=400", "-XMP-exif:DateTimeOriginal=2021:06:01 10:34:56.5+01:00",
        "-XMP-exifEX:LensModel=EF 24-70mm f/2.8L", "-XMP-tiff:Make=Canon", "-XMP-tiff:Orientation=6",
        "-XMP-aux:SerialNumber=012345",
    ],
    "faces-hierarchy": [
        "-XMP-mwg-rs:RegionInfo={AppliedToDimensions={W=4000,H=3000,Unit=pixel},RegionList=["
        "{Area={X=0.41,Y=0.3,W=0.1,H=0.15,Unit=normalized},Name=Alice,Type=Face},"
        "{Area={X=0.7,Y=0.35,W=0.12,H=0.16,Unit=normalized},Name=Bob,Type=Face}]}",
        "-XMP-lr:HierarchicalSubject=People|Alice", "-XMP-lr:HierarchicalSubject=Places|France|Paris",
        "-XMP-digiKam:TagsList=People/Alice",
        "-XMP-mwg-kw:HierarchicalKeywords={Keyword=People,Children=[{Keyword=Alice}]}",
        "-XMP-dc:Subject=Alice", "-XMP-dc:Subject=Paris",
    ],
    "microsoft-mp1": [
        "-XMP-microsoft:LastKeywordXMP=Alice", "-XMP-microsoft:LastKeywordXMP=Beach",
        "-XMP-microsoft:RatingPercent=75", "-XMP-microsoft:DateAcquired=2021:06:01 10:34:56",
        "-XMP-MP1:PanoramicStitchCameraMotion=Rigid Scale", "-XMP-MP1:PipelineVersion=1.0",
        "-XMP-MP:RegionInfoMP={Regions=[{PersonDisplayName=Alice,Rectangle=0.35, 0.225, 0.1, 0.15}]}",
        "-XMP-dc:Subject=Alice", "-XMP-dc:Subject=Beach",
    ],
    "darwin-core": [
        "-XMP-dwc:ScientificName=Felis catus", "-XMP-dwc:Kingdom=Animalia", "-XMP-dwc:EventDate=2021-06-01",
        "-XMP-dwc:DCDecimalLatitude=48.8566", "-XMP-dwc:RecordedBy=A. Naturalist",
        "-XMP-dc:Subject=cat",
    ],
    "lightroom-develop": [
        "-XMP-crs:ProcessVersion=11.0", "-XMP-crs:Exposure2012=+0.50", "-XMP-crs:Contrast2012=+12",
        "-XMP-crs:WhiteBalance=Custom", "-XMP-crs:Temperature=5200", "-XMP-crs:Tint=+8",
        "-XMP-crs:ToneCurvePV2012=0, 0", "-XMP-crs:ToneCurvePV2012=255, 255", "-XMP-crs:HasSettings=True",
        "-XMP-crs:CropTop=0.05", "-XMP-xmp:Rating=5", "-XMP-xmp:Label=Green",
    ],
    "iptc-rights": [
        "-XMP-iptcCore:Location=Eiffel Tower",
        "-XMP-iptcCore:CreatorContactInfo={CiEmailWork=a@example.org,CiAdrCity=Paris}",
        "-XMP-iptcExt:PersonInImage=Alice", "-XMP-dc:Creator=Jane Doe", "-XMP-dc:Creator=John Roe",
        "-XMP-dc:Rights=(c) 2021 Jane Doe", "-XMP-dc:Rights-fr=(c) 2021 Jane Doe, tous droits",
        "-XMP-photoshop:Headline=Paris", "-XMP-xmpRights:Marked=True", "-XMP-plus:ImageSupplierName=Jane",
    ],
    "everything": [
        "-XMP-xmp:Rating=2", "-XMP-exif:GPSLatitude=-33.8568", "-XMP-exif:GPSLongitude=151.2153",
        "-XMP-exif:GPSDateTime=2021:06:01 10:34:56Z", "-XMP-exif:Flash={Fired=False,Mode=2,Return=0}",
        "-XMP-lr:HierarchicalSubject=Places|Australia|Sydney", "-XMP-microsoft:LastKeywordXMP=Sydney",
        "-XMP-crs:Exposure2012=-0.30", "-XMP-dwc:Country=Australia", "-XMP-MP1:PipelineVersion=2.0",
        "-XMP-dc:Subject=Sydney", "-XMP-dc:Subject=opera house", "-XMP-dc:Subject=harbour",
        "-XMP-dc:Description=Opera house", "-XMP-dc:Description-en-AU=The Opera House",
    ],
}  # fmt: skip

# Values as other tools write them, which exiftool (and Exiv2) would spell differently.
HAND_WRITTEN = {
    "hand-gps-dms": """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000 1.000000, 0000/00/00-00:00:00">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
   exif:GPSLatitude="48,51,23.76N"
   exif:GPSLongitude="2,17,40.2E"
   exif:GPSDateTime="2021:06:01 10:34:56Z"
   exif:GPSVersionID="2.3.0.0"
   xmp:CreateDate="2021-06-01T12:34:56.000+02:00"
   xmp:Rating="4"
   photoshop:DateCreated="2021-06-01T10:34:56Z">
   <exif:Flash exif:Fired="True"/>
   <xmp:Identifier><rdf:Bag><rdf:li>IMG_0001</rdf:li></rdf:Bag></xmp:Identifier>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
""",
    "hand-windows-gallery": """<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="uuid:faf5bdd5-ba3d-11da-ad31-d33d75182f1b" xmlns:MicrosoftPhoto="http://ns.microsoft.com/photo/1.0/"><MicrosoftPhoto:LastKeywordXMP><rdf:Bag xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:li>Family</rdf:li><rdf:li>Holiday</rdf:li></rdf:Bag></MicrosoftPhoto:LastKeywordXMP><MicrosoftPhoto:Rating>75</MicrosoftPhoto:Rating></rdf:Description><rdf:Description rdf:about="uuid:faf5bdd5-ba3d-11da-ad31-d33d75182f1b" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:li>Family</rdf:li><rdf:li>Holiday</rdf:li></rdf:Bag></dc:subject><dc:description><rdf:Alt xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:li xml:lang="x-default">At the lake</rdf:li></rdf:Alt></dc:description></rdf:Description><rdf:Description rdf:about="uuid:faf5bdd5-ba3d-11da-ad31-d33d75182f1b" xmlns:MP1="http://ns.microsoft.com/photo/1.1"><MP1:PanoramicStitchCameraMotion>Rigid Scale</MP1:PanoramicStitchCameraMotion></rdf:Description><rdf:Description rdf:about="uuid:faf5bdd5-ba3d-11da-ad31-d33d75182f1b" xmlns:xmp="http://ns.adobe.com/xap/1.0/"><xmp:Rating>4</xmp:Rating></rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end='w'?>""",  # noqa: E501 - the packet's XML is one line
    "hand-darwin-core": """<x:xmpmeta xmlns:x="adobe:ns:meta/">
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
 <rdf:Description rdf:about="" xmlns:dwc="http://rs.tdwg.org/dwc/index.htm"
   xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/">
  <dwc:Record rdf:parseType="Resource">
   <dwc:institutionCode>MNHN</dwc:institutionCode>
   <dwc:basisOfRecord>HumanObservation</dwc:basisOfRecord>
  </dwc:Record>
  <dwc:Taxon rdf:parseType="Resource"><dwc:scientificName>Parus major</dwc:scientificName></dwc:Taxon>
  <xmp:ModifyDate>2021-06-01T10:34:56.5-03:00</xmp:ModifyDate>
  <dc:subject><rdf:Bag><rdf:li>bird</rdf:li><rdf:li>great tit</rdf:li><rdf:li>bird</rdf:li></rdf:Bag></dc:subject>
 </rdf:Description>
</rdf:RDF>
</x:xmpmeta>
""",
}


def make_corpus(folder: Path) -> list[Path]:
    """Write a photo and its sidecar for every corpus entry into ``folder``; returns the photos.

    The exiftool entries need exiftool; without it only the hand-written ones are made.
    """
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for name, tags in EXIFTOOL_SIDECARS.items():
        if EXIFTOOL is None:
            break
        photo = folder / f"{name}.jpg"
        Image.new("RGB", (8, 8), (10, 20, 30)).save(photo)
        sidecar = folder / f"{name}.jpg.xmp"
        subprocess.run([EXIFTOOL, "-q", "-q", "-o", str(sidecar), *tags, str(photo)], check=True, timeout=60)
        photos.append(photo)
    for name, text in HAND_WRITTEN.items():
        photo = folder / f"{name}.jpg"
        Image.new("RGB", (8, 8), (10, 20, 30)).save(photo)
        (folder / f"{name}.jpg.xmp").write_text(text, encoding="utf-8")
        photos.append(photo)
    return photos


def raw_values(packet: bytes) -> list[tuple[str, str]]:
    """The raw text of every property but imgcap's, the ``x-default`` description and ``dc:subject``.

    Each is ``(path, text)`` with struct fields, array positions, languages and qualifiers in the
    path, in document order: a changed, dropped, added or reordered value changes the list.
    """
    root = ET.fromstring(packet)
    rdf = root if root.tag == f"{{{RDF}}}RDF" else root.find(f".//{{{RDF}}}RDF")
    pairs: list[tuple[str, str]] = []
    for desc in rdf.findall(f"{{{RDF}}}Description"):
        for name, value in desc.attrib.items():
            if (not name.startswith(f"{{{RDF}}}") and not name.startswith(f"{{{IMGCAP}}}")
                    and name != f"{{{DC}}}description"):
                pairs.append((name, value))
        for prop in desc:
            if prop.tag.startswith(f"{{{IMGCAP}}}") or prop.tag == f"{{{DC}}}subject":
                continue
            if prop.tag == f"{{{DC}}}description":
                for li in prop.iter(f"{{{RDF}}}li"):
                    lang = li.get("{http://www.w3.org/XML/1998/namespace}lang", "x-default")
                    if lang.lower() != "x-default":
                        pairs.append((f"{prop.tag}[{lang.lower()}]", li.text or ""))
                continue
            _walk(prop, prop.tag, pairs)
    return pairs


def _walk(element: ET.Element, path: str, pairs: list[tuple[str, str]]) -> None:
    for name, value in element.attrib.items():
        pairs.append((f"{path}/@{name}", value))
    children = list(element)
    if not children:
        pairs.append((path, element.text or ""))
    for i, child in enumerate(children):
        _walk(child, f"{path}/{child.tag}[{i}]", pairs)


def subject_of(packet: bytes) -> list[str]:
    """The ``dc:subject`` entries of a packet, in order."""
    root = ET.fromstring(packet)
    element = root.find(f".//{{{DC}}}subject")
    return [] if element is None else [li.text or "" for li in element.iter(f"{{{RDF}}}li")]
