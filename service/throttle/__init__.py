"""Budgets for hostile traffic: the stores (memory, Redis + Lua), the login throttle,
fixed-window route limits, and the keys they count under."""
