"""The daily AI review report (issue 13)."""
