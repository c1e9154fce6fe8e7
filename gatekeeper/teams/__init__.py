"""Approvals in Microsoft Teams: the bot's token check (auth), the Adaptive Cards (cards), card actions
turned into decisions (invoke), the Agents SDK host for `POST /api/messages` (bot) and the proactive cards
(proactive). Only `bot` and `proactive` import the Microsoft 365 Agents SDK, on first use."""
