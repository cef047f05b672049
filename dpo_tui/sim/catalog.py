"""What the simulated Together account offers: models, limits, hardware, configs, identity.

The catalogue is a dated snapshot of Together's (the price table's `date` and `source`):
Qwen2.5-72B-Instruct-Turbo is dedicated-only (it left the serverless catalogue; a serverless
chat request for it gets Together's "non-serverless model" error), Qwen2.5-7B-Instruct-Turbo
is serverless, Qwen2.5-7B-Instruct is a fine-tunable base served on dedicated endpoints.
Prices come from the dated price table (dpo_tui/provider/prices.py); nothing is hard-coded
here that the table already says.
"""

from __future__ import annotations

from dataclasses import dataclass

from dpo_tui.provider.prices import PriceTable

PROJECT_ID, PROJECT_SLUG, PROJECT_NAME = "proj_sim", "simproj", "Simulated project"
PUBLIC_PROJECT = "proj_pub"
ORG_ID, USER_ID = "org_sim", "user-sim"
STAMP = "2025-01-01T00:00:00Z"


@dataclass(frozen=True)
class BaseModel:
    name: str
    key: str             # short id used in sm_/ml_/rv_/cr_ ids
    profile: str         # skill profile of the simulated policy (policy.PROFILES)
    serverless: bool
    dedicated: bool
    fine_tuning: bool
    params_b: float
    context: int = 32768

    @property
    def ml_id(self) -> str:
        return f"ml_{self.key}"

    @property
    def rv_id(self) -> str:
        return f"rv_{self.key}"

    @property
    def cr_id(self) -> str:
        return f"cr_{self.key}"

    @property
    def registry_path(self) -> str:
        return f"projects/{PUBLIC_PROJECT}/models/{self.ml_id}"


BASE_MODELS: tuple[BaseModel, ...] = (
    BaseModel("Qwen/Qwen2.5-72B-Instruct-Turbo", "qwen25_72b_turbo", "72b", False, True, False, 72.7),
    BaseModel("Qwen/Qwen2.5-7B-Instruct-Turbo", "qwen25_7b_turbo", "7b", True, False, False, 7.6),
    BaseModel("Qwen/Qwen2.5-7B-Instruct", "qwen25_7b", "7b", False, True, True, 7.6),
)
BY_NAME = {m.name: m for m in BASE_MODELS}
BY_KEY = {m.key: m for m in BASE_MODELS}
DEFAULT_INSTANCE = "1xnvidia-h100-80gb"


def base_model(name: str) -> BaseModel | None:
    return BY_NAME.get(name)


def supported_model(m: BaseModel, prices: PriceTable) -> dict:
    products = ([("PRODUCT_SERVERLESS")] if m.serverless else []) + (["PRODUCT_DEDICATED"] if m.dedicated else []) \
        + (["PRODUCT_FINE_TUNING"] if m.fine_tuning else [])
    price = prices.serverless.get(m.name)
    instance = prices.dedicated.get(m.name, DEFAULT_INSTANCE)
    gpu_count, gpu_type = instance.split("x", 1)
    profiles = [{
        "profileId": m.cr_id, "certifiedConfigRevisionId": m.cr_id, "certifiedModelRevisionId": m.rv_id,
        "config": f"projects/{PUBLIC_PROJECT}/configs/{m.cr_id}",
        "model": f"{m.registry_path}/revisions/{m.rv_id}", "modelName": m.name,
        "gpuType": gpu_type, "gpuCount": int(gpu_count), "parallelism": f"TP{gpu_count}",
        "quantization": "FP8" if m.name.endswith("-Turbo") else "BF16",
        **({"adapterMode": "ADAPTER_MODE_DYNAMIC"} if m.name in prices.adapters else {}),
        "performanceBenchmarks": {"decodingSpeedTps": 120.0, "maxContextLength": str(m.context),
                                  "timeToFirstTokenMs": 180.0},
    }] if m.dedicated else []
    return {
        "id": f"sm_{m.key}", "name": m.name, "displayName": m.name.split("/")[-1], "displayType": "chat",
        "baseModel": m.registry_path, "baseModelId": m.ml_id, "capabilities": ["CAPABILITY_CHAT"],
        "createdAt": STAMP, "updatedAt": STAMP, "inputModalities": ["MODALITY_TEXT"],
        "outputModalities": ["MODALITY_TEXT"], "products": products, "publisher": "Qwen",
        "status": "SUPPORTED_MODEL_STATUS_SUPPORTED", "contextLength": str(m.context), "features": [],
        "tags": ["qwen", "simulated"],
        "pricing": ({"input": price.input_per_1m, "output": price.output_per_1m, "cachedInput": price.input_per_1m}
                    if price and m.serverless else None),
        "serverlessEndpoint": m.name if m.serverless else None,
        "deploymentProfiles": profiles,
    }


def model_limits(m: BaseModel) -> dict:
    return {
        "model_name": m.name, "default_gradient_accumulation_steps": 1,
        "lora_training": {"default_rank": 16, "max_batch_size": 32, "max_batch_size_dpo": 16, "min_batch_size": 8,
                          "max_rank": 64, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj",
                                                             "gate_proj", "up_proj", "down_proj"]},
        "full_training": {"max_batch_size": 32, "max_batch_size_dpo": 16, "min_batch_size": 8},
        "max_learning_rate": 1.0, "min_learning_rate": 1e-08, "max_num_checkpoints": 10, "max_num_epochs": 20,
        "max_num_evals": 100, "max_seq_length_dpo": 8192, "max_seq_length_sft": 8192, "min_max_seq_length": 512,
        "merge_output_lora": True, "supports_full_training": True, "supports_reasoning": False,
        "supports_tools": False, "supports_vision": False,
    }


def instance_types(prices: PriceTable) -> list[dict]:
    out = []
    for name, it in prices.instances.items():
        out.append({"id": "it_" + name.replace("-", "_"), "name": name, "description": it.description,
                    "gpuType": it.gpu_type, "gpuCount": it.gpu_count, "gpuMemoryGib": it.gpu_memory_gib,
                    "priceCentsPerHour": int(it.price_cents_per_hour),
                    "regions": [{"name": "sim-local-1", "headroom": {"relation": "RELATION_GTE", "value": 8}}]})
    return out


def config(m: BaseModel, prices: PriceTable) -> dict:
    instance = prices.dedicated.get(m.name, DEFAULT_INSTANCE)
    count, acc = instance.split("x", 1)
    return {"id": m.cr_id, "projectId": PUBLIC_PROJECT, "referenceModel": m.registry_path,
            "referenceModelId": m.ml_id,
            "selectors": [{"key": "accelerator_type", "value": acc}, {"key": "accelerator_count", "value": count},
                          {"key": "adapter_mode", "value": "dynamic"}],
            "certifications": [{"certificationType": "CERTIFICATION_TYPE_CERTIFIED", "certifiedAt": STAMP,
                                "certifiedBy": "sim", "model": m.registry_path, "modelRevisionId": m.rv_id,
                                "target": "CERTIFICATION_TARGET_MRE"}]}


def registry_model(m: BaseModel) -> dict:
    return {"id": m.ml_id, "name": m.name, "organizationId": ORG_ID, "projectId": PUBLIC_PROJECT,
            "visibility": "VISIBILITY_INTERNAL",
            "weights": {"type": "WEIGHTS_TYPE_DEFAULT", "architecture": "Qwen2ForCausalLM",
                        "contextLength": str(m.context)},
            "baseModel": "", "baseModelId": "", "description": f"{m.name} (simulated)"}


def whoami() -> dict:
    return {"type": "project_api_key", "api_key": {"id": "key_sim"},
            "organization": {"id": ORG_ID, "name": "Simulated organization"},
            "project": {"id": PROJECT_ID, "name": PROJECT_NAME, "slug": PROJECT_SLUG}}
