// The evidence behind a lineage edge, in plain words.  An edge's evidence (pedigree.query.graph)
// holds the fingerprint distance, whether the two share coordinates, the direction signals
// (+1: the signal says the parent came first, -1: the child did) and, for merges and copies, what
// was fitted.  Each known field becomes one short sentence; unknown fields are left out.

const SIGNALS = {
  time: ["time says the parent is older", "time says the parent is newer"],
  declared: ["the child's card declares this parent", "the parent's card names the child as its base"],
  quantized: ["the child is quantized and the parent is not", "the parent is quantized and the child is not"],
  layer_map: ["the child's blocks map onto a subset of the parent's", "the parent's blocks map onto a subset of the child's"],
  narrower_mlp: ["the child's MLP is narrower (pruned)", "the parent's MLP is narrower"],
  vocabulary: ["the child's vocabulary extends the parent's", "the parent's vocabulary extends the child's"],
  folded_gains: ["the child has the norm gains folded into its weights", "the parent has folded norm gains"],
  left_coordinates: [
    "the parent keeps the family's coordinates and the child left them",
    "the child keeps the family's coordinates and the parent left them",
  ],
  growth: [
    "the child's weights are larger than the parent's in every sampled matrix (training grows weights)",
    "the parent's weights are larger than the child's in every sampled matrix",
  ],
  merge: ["the child is a weight average that includes this parent", "the parent is a weight average that includes the child"],
};

function percent(x) {
  return `${(100 * x).toFixed(Math.abs(x) < 0.1 ? 1 : 0)} %`;
}

/** "shares 4 of 4 blocks in order" from a related entry's block pairs [[i, j, cosine], ...]. */
export function blockSentence(blockPairs, layersA, layersB) {
  if (!Array.isArray(blockPairs) || blockPairs.length === 0) return null;
  const total = Math.max(layersA || 0, layersB || 0, blockPairs.length);
  let inOrder = true;
  for (let k = 1; k < blockPairs.length; k++) {
    if (blockPairs[k][0] <= blockPairs[k - 1][0] || blockPairs[k][1] <= blockPairs[k - 1][1]) inOrder = false;
  }
  return `shares ${blockPairs.length} of ${total} blocks${inOrder ? " in order" : ""}`;
}

/** The sentences for one edge's evidence dict (and, when known, the block pairs it shares). */
export function evidenceSentences(evidence, extra = {}) {
  const out = [];
  const blocks = blockSentence(extra.blocks, extra.layersA, extra.layersB);
  if (blocks) out.push(blocks);
  if (!evidence || typeof evidence !== "object") return out;
  if (typeof evidence.distance === "number") {
    out.push(`fingerprint distance ${evidence.distance.toFixed(evidence.distance < 0.01 ? 6 : 3)}`);
  }
  if (evidence.same_coordinates === true) out.push("the weights share coordinates (no permutation)");
  if (evidence.same_coordinates === false) out.push("the weights are in other coordinates (permuted or rotated)");
  if (typeof evidence.copy_of === "string") out.push(`a function-preserving copy of ${evidence.copy_of}`);
  const merge = evidence.merge;
  if (merge && typeof merge === "object" && typeof merge.alpha === "number") {
    const residual = typeof merge.residual_ratio === "number" ? `, residual ${percent(merge.residual_ratio)}` : "";
    out.push(`a weight average of two parents, α = ${merge.alpha.toFixed(2)}${residual}`);
  }
  const signals = evidence.signals && typeof evidence.signals === "object" ? evidence.signals : {};
  for (const [name, words] of Object.entries(SIGNALS)) {
    const sign = signals[name];
    if (sign === 1) out.push(words[0]);
    else if (sign === -1) out.push(words[1]);
  }
  if (typeof signals.norm_growth === "number" && signals.norm_growth !== 0) {
    const change = Math.exp(signals.norm_growth) - 1;
    out.push(`attention weights ${change > 0 ? "grew" : "shrank"} by ${percent(Math.abs(change))}`);
  }
  if (typeof evidence.direction_probability === "number") {
    out.push(`the weights put the parent first with probability ${evidence.direction_probability.toFixed(2)}`);
  }
  if (evidence.directed === false) out.push("neither could be shown to come first");
  if (Array.isArray(evidence.latent_ancestor) && evidence.latent_ancestor.length) {
    out.push(`derived through an unseen ancestor shared with ${evidence.latent_ancestor.join(", ")}`);
  }
  return out;
}

/** One line: the sentences joined by semicolons (an empty list says so). */
export function evidenceText(evidence, extra = {}) {
  const sentences = evidenceSentences(evidence, extra);
  return sentences.length ? sentences.join("; ") : "no recorded evidence";
}
