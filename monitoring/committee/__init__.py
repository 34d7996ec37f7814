"""The credit committee: classification proposals, votes and ratification of floors."""
