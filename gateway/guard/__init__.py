"""The guard engine: metrics -> rules -> rulesets -> stages -> actions."""
