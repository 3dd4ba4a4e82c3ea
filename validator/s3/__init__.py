"""An S3-compatible API on the validator, for boto3, aws-cli, rclone and s3cmd.

Served on its own port (``--s3-port``) by the validator's process, as a thin aiohttp layer
over the same core as ``/v1/objects``: bodies stream into the :class:`~validator.uploads.
Uploader` and out of the :class:`~validator.downloads.Downloader`, never held whole.

- ``errors``: S3's error codes and statuses, in one table.
- ``xml``: S3's XML responses, and the request bodies it parses (bounded).
- ``keys``: access keys per user; secrets encrypted at rest (SigV4 needs them back).
- ``auth``: SigV4 in headers and presigned URLs, checked with botocore's own signer.
- ``chunked``: ``aws-chunked`` bodies (signed chunks, trailing checksums) and checksums.
- ``service``: buckets, objects and multipart uploads over the gateway, without HTTP.
- ``app``: the routes.
"""
