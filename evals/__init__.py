"""Transcript replay evals: case format (`case`), runner (`runner`), assertions (`checks`), LLM cassettes
(`cassettes`), reports (`report`) and `import-log` (`importer`). See evals/README.md."""
