"""Subcommands of the ``plan-lite`` CLI (one module each; see ``plan_lite.cli``)."""
