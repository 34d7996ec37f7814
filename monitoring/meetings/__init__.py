"""Post-loan review meetings: agenda, decisions and minutes."""
