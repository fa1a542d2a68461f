"""The spreadsheet connector's one error: a file that cannot be read at all (the CLI exits 1).

HubError
└── PayloadError (400)
    └── FileUnreadable      missing, not a spreadsheet, undecodable, no header row
"""

from __future__ import annotations

from hub.errors import PayloadError


class FileUnreadable(PayloadError):
    code = "file_unreadable"
