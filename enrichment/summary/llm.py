"""`HunyuanExtractor`: the same four facts, asked of Tencent Hunyuan through the official SDK.

Why an LLM option: rules cover the phrasing we have seen; a model copes with phrasing we have not.
Why these choices: Temperature 0 and a JSON Schema in the system prompt make the reply repeatable and
parseable; the reply is validated with the same pydantic models the rules return, so a malformed
answer fails loudly as `ExtractionError` instead of reaching the journey. The client is built from
`HttpProfile(protocol, endpoint)` like the ASR client (contract §1), so tests aim it at the local fake
in `tests/fakes/tencent_cloud.py`. SDK errors (auth, throttling) propagate as
`TencentCloudSDKException` so the caller can retry on `.code`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.hunyuan.v20230901 import hunyuan_client, models

from .errors import ExtractionError
from .lexicon import Lexicons
from .models import CallSummary, TranscriptLine

DEFAULT_MODEL = "hunyuan-turbos-latest"
DEFAULT_REGION = "ap-guangzhou"
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_SPEAKER = {"agent": "坐席", "customer": "客户"}

_INSTRUCTIONS = "\n".join(
    [
        "你是销售通话分析助手。阅读坐席与客户的通话转写，只输出一个 JSON 对象，",
        "必须符合下面的 JSON Schema，不要输出任何解释。字段规则：",
        "- course：客户感兴趣的课程或产品，尽量使用课程目录里的名称；没有则为 null。",
        "- budget：客户本人说出的预算，单位为人民币元；坐席的报价不算；客户改口时以最后一次为准；",
        '  "不超过八万"的 min 为 null，"至少一万"的 max 为 null，"五千左右"的 min 和 max 都是 5000，',
        '  "两三万"是 20000 到 30000；text 填客户原话；没有说则为 null。',
        "- decision_role：谁做购买决定，如 本人决策、老板、家长、配偶、子女、采购、财务、人事、合伙人；",
        "  没有提到则为 null。",
        "- competitors：客户提到或确认对比过的竞品机构或品牌，客户明确否定的不算",
        '  （如"没考虑过新东方"），使用竞品名单里的规范名称。',
    ]
)


class HunyuanExtractor:
    """Summarise a transcript with Hunyuan `ChatCompletions` (non-streaming, Temperature 0)."""

    def __init__(
        self,
        secret_id: str,
        secret_key: str,
        region: str = DEFAULT_REGION,
        endpoint: str | None = None,
        protocol: str = "https",
        model: str = DEFAULT_MODEL,
        timeout_s: int = 30,
    ) -> None:
        profile = HttpProfile(protocol=protocol, endpoint=endpoint, reqTimeout=timeout_s)
        self._client = hunyuan_client.HunyuanClient(
            credential.Credential(secret_id, secret_key), region, ClientProfile(httpProfile=profile)
        )
        self.model = model

    def extract(self, lines: list[TranscriptLine], lexicons: Lexicons) -> CallSummary:
        """Ask the model; raise `ExtractionError` if its reply is not a valid `CallSummary`."""
        request = models.ChatCompletionsRequest()
        request.from_json_string(json.dumps(self.request_params(lines, lexicons), ensure_ascii=False))
        response = self._client.ChatCompletions(request)
        choices = getattr(response, "Choices", None) or []
        message = getattr(choices[0], "Message", None) if choices else None
        content = getattr(message, "Content", None)
        if not isinstance(content, str) or not content.strip():
            raise ExtractionError("Hunyuan returned no message content")
        return normalise(parse_reply(content), lexicons)

    def request_params(self, lines: Sequence[TranscriptLine], lexicons: Lexicons) -> dict[str, Any]:
        """The ChatCompletions parameters for a transcript (public so the prompt can be inspected)."""
        return {
            "Model": self.model,
            "Messages": [
                {"Role": "system", "Content": system_prompt(lexicons)},
                {"Role": "user", "Content": transcript_text(lines)},
            ],
            "Stream": False,
            "Temperature": 0.0,
            "EnableEnhancement": False,
        }


def system_prompt(lexicons: Lexicons) -> str:
    """Instructions, the source's vocabulary and the JSON Schema of `CallSummary`."""
    schema = json.dumps(CallSummary.model_json_schema(), ensure_ascii=False)
    return (
        f"{_INSTRUCTIONS}\n课程目录：{'、'.join(lexicons.courses)}\n竞品名单：{'、'.join(lexicons.competitors)}"
        f"\nJSON Schema：{schema}"
    )


def transcript_text(lines: Sequence[TranscriptLine]) -> str:
    """One line per sentence, labelled 坐席/客户, in time order."""
    ordered = sorted(lines, key=lambda line: line.start_ms)
    return "\n".join(f"{_SPEAKER[line.speaker]}：{line.text}" for line in ordered)


def parse_reply(content: str) -> CallSummary:
    """The `CallSummary` in a model reply; tolerates ```json fences and prose around the object."""
    text = content.strip()
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1).strip()
    elif not text.startswith("{"):
        first, last = text.find("{"), text.rfind("}")
        text = text[first : last + 1] if 0 <= first < last else text
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExtractionError(f"Hunyuan reply is not JSON: {exc.msg}", raw=content) from exc
    if not isinstance(data, dict):
        raise ExtractionError("Hunyuan reply is JSON but not an object", raw=content)
    try:
        return CallSummary.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise ExtractionError(f"Hunyuan reply does not match CallSummary: {problems}", raw=content) from exc


def normalise(summary: CallSummary, lexicons: Lexicons) -> CallSummary:
    """Canonical names for course and competitors, duplicates dropped, as the rule extractor reports them."""
    names = [lexicons.canonical_competitor(n) for n in summary.competitors if n.strip()]
    course = lexicons.canonical_course(summary.course) if summary.course else None
    return summary.model_copy(update={"course": course or None, "competitors": list(dict.fromkeys(names))})
