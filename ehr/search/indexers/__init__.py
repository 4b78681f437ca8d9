"""One indexer per search-parameter type (http://hl7.org/fhir/R4/search.html#ptypes), all
behind :class:`~ehr.search.indexers.base.Indexer`. :data:`INDEXERS` maps a parameter type to
the indexer that fills its table."""

from __future__ import annotations

from ehr.search.indexers.base import Context, Indexer, Row
from ehr.search.indexers.composite import CompositeIndexer
from ehr.search.indexers.date import DateIndexer
from ehr.search.indexers.number import NumberIndexer
from ehr.search.indexers.quantity import QuantityIndexer
from ehr.search.indexers.reference import IDENTIFIER, ReferenceIndexer
from ehr.search.indexers.string import StringIndexer
from ehr.search.indexers.token import OF_TYPE, TokenIndexer
from ehr.search.indexers.uri import UriIndexer

__all__ = ["IDENTIFIER", "INDEXERS", "OF_TYPE", "Context", "Indexer", "Row"]

_SIMPLE: dict[str, Indexer] = {
    ix.param_type: ix
    for ix in (
        StringIndexer(),
        TokenIndexer(),
        ReferenceIndexer(),
        DateIndexer(),
        NumberIndexer(),
        QuantityIndexer(),
        UriIndexer(),
    )
}

#: parameter type -> its indexer
INDEXERS: dict[str, Indexer] = {**_SIMPLE, "composite": CompositeIndexer(_SIMPLE)}
