"""The storage engine: one append-only commitlog per broker and the indexes derived from it.

Modules: `record` (the record format, pure), `commitlog` (segments on disk), `flush` (group
commit), `dispatcher` (log -> rocksdict indexes and metadata), `index_store` (index keys),
`expiry` (which segments to delete, pure), `dedup` (producer retry window rebuilt from the log),
`errors`, and `message_store` (`MessageStore`, the engine's one entry point). The public surface
is re-exported here and loaded on first use, so importing a pure submodule stays cheap.
"""

from __future__ import annotations

from orbitmq.common.lazy_exports import lazy_exports

_EXPORTS = {
    "MessageStore": "message_store", "StoreConfig": "message_store", "PutResult": "message_store",
    "GetResult": "message_store", "GetStatus": "message_store", "Message": "record",
    "StoreError": "errors", "CorruptRecord": "errors", "OffsetMismatch": "errors", "MessageTooLarge": "errors",
    "StoreClosed": "errors", "BadMessage": "errors", "LocalWriteRefused": "errors",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
