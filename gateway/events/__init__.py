"""New uploads captioned as they arrive: the formats S3-compatible stores send, the intake that queues them
durably, and the workers that drain the queue (in ``florence-tagger serve`` or ``florence-tagger worker``).

The queue's rows live in the catalogue's database (``gateway/catalogue/queue.py``, the SQL); this package
decides what to queue, when to retry and what a caption of an event is.
"""
