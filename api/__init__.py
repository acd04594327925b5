"""Entry points: the ``sopagent`` CLI, the demo, and the HTTP service (WeCom callback, chat, operator API)."""
