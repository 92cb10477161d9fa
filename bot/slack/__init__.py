"""The Slack edge: the Bolt app, its listeners and the words it shows."""
