"""The Couchbase backend: DCP change feed (our asyncio client), SDK write-back, metadata."""
