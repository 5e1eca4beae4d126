"""What a customer sees and does, and the cases around a delivery; no HTTP in it.

``links.py``: signed tracking links, their expiry and revocation. ``view.py``: what a link
shows (this delivery only; the van only while it drives to this stop). ``pod.py``: proof of
delivery, stored with the delivery it completes in one transaction. ``claims.py``: claims for
damaged or missing items. ``models.py`` and ``pod_models.py``: their API shapes.
"""
