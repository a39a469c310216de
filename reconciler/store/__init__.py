"""What fleet keeps on disk about its sessions (docs/sessions.md).

- records.py  the per-agent session records and exit records, written atomically
- ledger.py   spend per day and tier, summed from the records
"""
