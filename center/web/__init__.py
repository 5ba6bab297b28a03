"""The staff console and the JSON API (aiohttp), served by the same process as the ingest."""
