"""Uploads (the admin's import page is the only form that takes a file) never sit in memory and
never grow past IMPORT_MAX_BYTES on disk."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler


class CappedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Streams each uploaded file into a temporary file and stops storing it past IMPORT_MAX_BYTES.

    The rest of the body is still read (and dropped) so that the browser gets the form back with
    the reason; the file's ``size`` stays the full size received, which the import form refuses.
    """

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.stored = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        if self.stored + len(raw_data) > settings.IMPORT_MAX_BYTES:
            self.stored = settings.IMPORT_MAX_BYTES + 1  # over the limit: store nothing more of this file
            return None
        self.stored += len(raw_data)
        self.file.write(raw_data)
        return None
