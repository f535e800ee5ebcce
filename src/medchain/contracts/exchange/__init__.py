"""Exchange: the chain authorises each record transfer and logs it."""

from medchain.contracts.exchange.handler import ExchangeHandler

__all__ = ["ExchangeHandler"]
