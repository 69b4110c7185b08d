"""The simulator's avatar (model) catalogue: `GET /api/odin/v3/model` and `GET .../dropdown/models`.

The pair M000045058 / BG00002320 is the one of the vendor's getting-started example (the seed
document); every other avatar, outfit and label is invented for the simulator [INF].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

THUMBNAILS = "https://cdn.aistudios.com/ai/model-introduce/thumbnails"


@dataclass(frozen=True)
class Clothes:
    id: str
    en: str
    ko: str


@dataclass(frozen=True)
class Avatar:
    id: str
    en: str
    ko: str
    avatar_type: str  # [INF] the dropdown's `avatarType`
    clothes: tuple[Clothes, ...]

    def wire(self) -> dict[str, Any]:
        """The `models[]` entry: `{id, label{ko,en}, thumbnail, clothes[{id, label, thumbnail}]}`."""
        first = self.clothes[0].id
        return {
            "id": self.id,
            "label": {"ko": self.ko, "en": self.en},
            "thumbnail": f"{THUMBNAILS}/{self.id}_{first}.png",
            "clothes": [
                {
                    "id": c.id,
                    "label": {"ko": c.ko, "en": c.en},
                    "thumbnail": f"{THUMBNAILS}/{self.id}_{c.id}.png",
                }
                for c in self.clothes
            ],
        }


AVATARS: tuple[Avatar, ...] = (
    Avatar(
        "M000045058",
        "Daniel",
        "다니엘",
        "standard",
        (Clothes("BG00002320", "Navy suit", "네이비 정장"), Clothes("BG00002321", "White shirt", "흰 셔츠")),
    ),
    Avatar(
        "M000004017",
        "Hana",
        "하나",
        "standard",
        (Clothes("BG00001101", "Grey blazer", "회색 블레이저"), Clothes("BG00001102", "Knit", "니트")),
    ),
    Avatar("M000112233", "Oliver", "올리버", "standard", (Clothes("BG00003001", "Casual", "캐주얼"),)),
    Avatar("M000998877", "Sim Custom", "심 커스텀", "custom", (Clothes("BG00009001", "Default", "기본"),)),
)
BY_ID: dict[str, Avatar] = {avatar.id: avatar for avatar in AVATARS}


def has_clothes(avatar: Avatar, clothes_id: str) -> bool:
    return any(c.id == clothes_id for c in avatar.clothes)


def models_wire() -> dict[str, Any]:
    """`data` of `GET /api/odin/v3/model`."""
    return {"models": [avatar.wire() for avatar in AVATARS]}


def dropdown_wire() -> list[dict[str, Any]]:
    """`data` of `GET /api/odin/v3/dropdown/models`: `[{id, label, avatarType}]`."""
    return [{"id": a.id, "label": a.en, "avatarType": a.avatar_type} for a in AVATARS]
