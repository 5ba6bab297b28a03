"""Device drivers: pure wire-protocol decoders plus thin asyncio link shells."""
