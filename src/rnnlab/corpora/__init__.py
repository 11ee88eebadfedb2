"""The texts shipped with rnnlab (dinosaur names, Shakespeare, dates for the translator): data, not code.
How they were rebuilt from public packages and under which licences: SOURCES.md in this folder."""
