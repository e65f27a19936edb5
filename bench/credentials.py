"""The bearer token the load is sent with: "x" for the upstream and the bare proxy (they ignore it),
a virtual key issued by Sluice's admin API for Sluice, so key lookup and attribution are measured."""

TOKEN = "x"
