"""The example schema the repository ships: users and their accounts, as in the myfy seeds.

``[tool.myfy-db] metadata = "myfy_db.example:Base"`` in the repository's pyproject.toml points
here, so a fresh clone's ``myfy-db create-tables``, ``migrate`` and ``shell`` work with
nothing set. The revisions under ``migrations/`` build exactly this schema.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import DateTime, ForeignKey, Numeric, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base of the example schema."""


class User(Base):
    """A person who signs in."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    accounts: Mapped[list[Account]] = relationship(back_populates="owner")

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, email={self.email!r})"


class Account(Base):
    """A balance held by a user."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    balance: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0.00"))

    owner: Mapped[User] = relationship(back_populates="accounts")

    def __repr__(self) -> str:
        return f"Account(id={self.id!r}, owner_id={self.owner_id!r}, balance={self.balance!r})"
