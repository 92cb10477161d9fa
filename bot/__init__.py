"""signcsr-bot: get CSRs stored in PAM360 signed, with approvals in Slack."""
