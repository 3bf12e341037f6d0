"""The EXTENDED COPY manager (SPC-4 6.4): resolves CSCDs to copy ends (:mod:`.ports`)
and runs segments between them (:mod:`.manager`).
"""
