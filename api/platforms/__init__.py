"""E-commerce platform adapters: a platform's own push messages, verified and parsed, handed to the shop-neutral
order-event machinery of :mod:`api.order_events` (the same ``apply_event`` the signed generic webhook uses), so
idempotency, the never-backwards status and the ``order/<order_no>/<event>`` keys are shared, not re-implemented.

* :mod:`api.platforms.youzan` — 有赞 (Youzan) 有赞云 消息推送 (``POST /api/events/youzan``).
"""
