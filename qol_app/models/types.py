"""Shared annotated column types so every model spells common columns the same way."""

import datetime as dt
from typing import Annotated

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import mapped_column

from qol_app.db import utcnow

intpk = Annotated[int, mapped_column(primary_key=True)]
created_at = Annotated[dt.datetime, mapped_column(default=utcnow, nullable=False)]
str16 = Annotated[str, mapped_column(String(16))]
str32 = Annotated[str, mapped_column(String(32))]
str64 = Annotated[str, mapped_column(String(64))]
str255 = Annotated[str, mapped_column(String(255))]
patient_fk = Annotated[int, mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"), index=True)]
site_fk = Annotated[int, mapped_column(ForeignKey("sites.id", ondelete="RESTRICT"), index=True)]
