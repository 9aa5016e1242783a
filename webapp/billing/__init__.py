"""Billing: the versioned price book and the retail price of every usage row (part 1); prepaid credits,
invoices and FX rates build on the `price` columns it fills (part 2).

Money is `Decimal` everywhere. A usage row's `price` is what the tenant pays, in its plan's currency, kept at
the column scale (10 places) without rounding to cents; rounding happens once per invoice line.
"""
