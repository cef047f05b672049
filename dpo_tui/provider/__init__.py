"""The provider layer: every Together call the product makes, logged with tokens, cost and retries.

Public API (see provider.py): `Provider(settings, campaign, prices, tokenizer)`,
`await provider.chat(CallKey(rollout, iteration, step), stage=, model=, messages=,
temperature=, seed=, max_tokens=) -> ChatResult`, `provider.set_cap(usd)`,
`provider.recover_orphans()` (automatic on construction), `await provider.reissue_orphans()`.
Prices: `catalog.load_price_book(settings)`; availability: `catalog.ensure_available(...)`.
"""
