"""The validator: upload/download gateway, placement, challenger, repair and scoring.

Pure parts (placement, scoring) sit beside the thin aiohttp service that uses them.
"""
