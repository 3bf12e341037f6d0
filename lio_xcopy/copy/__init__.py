"""The EXTENDED COPY manager (SPC-4 6.4): resolves CSCDs to devices and runs segments.

Not built yet (issue 3).
"""
