"""
Document operations of the wave protocol (wave-protocol.md section 6): the
ten components (6.2), operations built from them, their well-formedness rules
(6.3), the document they apply to (6.1), and application, composition (6.4)
and transformation (6.5).

A package, in layers that import downwards only: ``components`` (and
strings as Java counts them), ``normalizer``, ``document`` (well-formedness,
documents, apply), ``compose``, ``transform``.  This module is the public
face: the rest of wavebox imports names from here.

Every receiving server re-runs the transform of a submitted delta, so the
behaviour here follows the Java reference (Wave in a Box) exactly, down to
which annotation values the transformed operations assert.  The differential
vectors in ``tests/data`` pin this; ``python -m wavebox.model.vectors`` runs
them.

Text is counted in UTF-16 code units, as on the wire.  A well-formed
operation carries no surrogates at all, so inside a valid document one Python
character is one item.
"""

from wavebox.model.docop.components import (
    COMPONENT_TYPES,
    DELETE_ELEMENT_END,
    ELEMENT_END,
    AnnotationBoundary,
    Characters,
    DeleteCharacters,
    DeleteElementEnd,
    DeleteElementStart,
    DocOp,
    DocOpBuilder,
    ElementEnd,
    ElementStart,
    ReplaceAttributes,
    Retain,
    UpdateAttributes,
    input_size,
    output_size,
    utf16_key,
    utf16_length,
)
from wavebox.model.docop.compose import compose
from wavebox.model.docop.document import (
    Document,
    Item,
    apply,
    check_well_formed,
    is_well_formed,
)
from wavebox.model.docop.normalizer import Normalizer, normalize
from wavebox.model.docop.transform import transform

__all__ = [
    "Retain", "Characters", "ElementStart", "ElementEnd", "DeleteCharacters",
    "DeleteElementStart", "DeleteElementEnd", "ReplaceAttributes",
    "UpdateAttributes", "AnnotationBoundary", "DocOp", "DocOpBuilder",
    "normalize", "Normalizer", "check_well_formed", "is_well_formed", "Document", "Item",
    "apply", "compose", "transform", "utf16_key", "utf16_length", "input_size",
    "output_size", "COMPONENT_TYPES", "ELEMENT_END", "DELETE_ELEMENT_END",
]
