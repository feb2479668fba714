"""K-Means personas (customer-level, scikit-learn).

Inputs: PERSONA_FEATURES from the customer features. The skewed ones (LOG_FEATURES) are
log1p-transformed, then all are standardised and clustered with K-Means. k is chosen by the
mean silhouette over k_min..k_max (silhouette is O(n^2): scored on a fixed-seed sample of at most
`sample_size` customers). K-Means and the scaler are fitted on every customer up to
settings.max_fit_customers (a deterministic customer sample above it; all customers are then
assigned to the nearest centre). Ties go to the smaller k.

Each cluster is named from its profile (cluster medians against the medians of all customers),
see `name_cluster`. The artifact (`PersonaModel`) holds the preprocessing, the fitted
scaler + K-Means pipeline and the names, so scoring new customers needs only the artifact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from customer_assets.common.sampling import sample_customers

# scikit-learn is imported where a model is fitted (`_fit`, `choose_k`, `fit_personas`), not at
# module level: importing it (~0.6 s) would otherwise be paid by every load of the code location
# (each CLI run, each `dagster dev` reload), also when no persona is fitted. Unpickling a
# PersonaModel imports sklearn through pickle itself.
if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

PERSONA_FEATURES = [
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "unique_products",
    "orders_per_30d",
    "tenure_days",
]
LOG_FEATURES = ["recency_days", "frequency", "monetary", "avg_order_value", "unique_products", "orders_per_30d"]
RANDOM_STATE = 42
NAME_QUANTILES = [0.4, 0.7, 0.8]  # the thresholds name_cluster compares cluster medians with


def prepare(features: pd.DataFrame, cols=PERSONA_FEATURES, log_cols=LOG_FEATURES) -> np.ndarray:
    missing = [c for c in cols if c not in features.columns]
    if missing:
        raise ValueError(f"customer features lack {missing}")
    x = features[list(cols)].astype(float).copy()
    for c in log_cols:
        x[c] = np.log1p(x[c].clip(lower=0))
    if not np.isfinite(x.to_numpy()).all():
        raise ValueError("persona features contain NaN or infinite values")
    return x.to_numpy()


@dataclass
class PersonaModel:
    """What scoring needs: features, preprocessing, the fitted scaler+K-Means, cluster names."""

    pipeline: Pipeline
    features: list
    log_features: list
    names: dict = field(default_factory=dict)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict(prepare(features, self.features, self.log_features))

    def assign(self, features: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Every customer's cluster and persona by this model, and the profile of those clusters
        (`describe_clusters`): scoring without refitting, the cluster numbers and names are the model's."""
        return describe_clusters(features, self.predict(features), self.names)

    def centroids(self) -> pd.DataFrame:
        """Cluster centres in original units (inverse of scaling and log1p)."""
        scaler, km = self.pipeline.named_steps["scale"], self.pipeline.named_steps["kmeans"]
        c = pd.DataFrame(scaler.inverse_transform(km.cluster_centers_), columns=self.features)
        for col in self.log_features:
            c[col] = np.expm1(c[col])
        c.insert(0, "cluster", range(len(c)))
        c.insert(1, "persona", [self.names.get(i, f"cluster {i}") for i in range(len(c))])
        return c


def _fit(x: np.ndarray, k: int) -> Pipeline:
    from sklearn.cluster import KMeans
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [("scale", StandardScaler()), ("kmeans", KMeans(n_clusters=k, n_init=4, random_state=RANDOM_STATE))]
    ).fit(x)


def silhouette_mean(dist_t: np.ndarray, labels: np.ndarray) -> float:
    """mean(sklearn.metrics.silhouette_samples(dist, labels, metric="precomputed")), bit for bit,
    from `dist_t` = dist.T as a C-contiguous array (computed once for every k).

    sklearn sums each sample's distances per cluster with one np.bincount per sample (a Python loop
    of n calls, then an n x k reduce); here the same sums come from n vector additions
    acc[label_j] += dist[:, j] in the same order j = 0..n-1, starting from 0.0, so every sum is the
    same sequence of float additions and the result is identical (tested). Label sets sklearn
    rejects (fewer than 2 or more than n-1 clusters) go to sklearn itself, with its error."""
    from sklearn.metrics import silhouette_samples

    n = len(labels)
    uniq, enc = np.unique(labels, return_inverse=True)  # as sklearn's LabelEncoder
    if not 2 <= len(uniq) <= n - 1:
        return float(np.mean(silhouette_samples(dist_t.T, labels, metric="precomputed")))
    freqs = np.bincount(enc)
    acc = np.zeros((len(uniq), n), dtype=dist_t.dtype)  # acc[c, i]: sum of d(i, j) over j in cluster c
    for j, c in enumerate(enc):
        acc[c] += dist_t[j]
    cd = acc.T.copy()
    rows = np.arange(n)
    intra = cd[rows, enc]
    cd[rows, enc] = np.inf
    cd /= freqs
    inter = cd.min(axis=1)
    denom = (freqs - 1).take(enc, mode="clip")
    with np.errstate(divide="ignore", invalid="ignore"):
        intra /= denom
    sil = inter - intra
    with np.errstate(divide="ignore", invalid="ignore"):
        sil /= np.maximum(intra, inter)
    return float(np.mean(np.nan_to_num(sil)))


def choose_k(x: np.ndarray, k_min: int = 3, k_max: int = 8, sample_size: int = 3000):
    """Fit K-Means for each k; return (best k, {k: silhouette}, {k: fitted pipeline})."""
    from sklearn.metrics.pairwise import euclidean_distances

    n = len(x)
    ks = [k for k in range(k_min, k_max + 1) if k < n]
    if not ks:
        raise ValueError(f"{n} customers: too few to cluster into {k_min}..{k_max} groups")
    scores, fits = {}, {}
    # silhouette_score(scaled x, labels, sample_size, random_state) draws the same customer sample
    # for every k (same n, same seed) and every k's scaler is fitted on the same x, so the sample's
    # pairwise distances are computed once and scored per k as "precomputed": the same numbers
    # (tested against silhouette_score) for one distance matrix instead of one per k
    sample = np.random.RandomState(RANDOM_STATE).permutation(n)[:min(sample_size, n)]
    dist_t = None
    for k in ks:
        pipe = _fit(x, k)
        labels = pipe.named_steps["kmeans"].labels_
        if len(set(labels)) < 2:
            scores[k] = float("nan")
        else:
            if dist_t is None:
                dist_t = np.ascontiguousarray(euclidean_distances(pipe.named_steps["scale"].transform(x)[sample]).T)
            scores[k] = silhouette_mean(dist_t, labels[sample])
        fits[k] = pipe
    valid = {k: s for k, s in scores.items() if not np.isnan(s)}
    if not valid:
        raise ValueError("every k gave a single cluster (all customers look the same)")
    best = max(valid, key=lambda k: (valid[k], -k))
    return best, scores, fits


def name_cluster(profile: pd.Series, overall: pd.DataFrame, quantiles: pd.DataFrame | None = None) -> str:
    """A readable name from cluster medians (`profile`) against all customers (`overall`).

    value: median monetary >= P80 of all customers "High-value", >= P40 "Mid-value", else
    "Low-value". behaviour: median recency >= P70 "lapsed"; median frequency 1 and tenure <= 60
    days "newcomers"; median frequency 1 "one-time buyers"; median frequency 2 "occasional
    buyers"; median orders per 30 days >= P80 "frequent regulars"; otherwise "regulars". Lapsed
    clusters say "lapsed one-time buyers", "lapsed occasional buyers" or "lapsed regulars".
    `quantiles`: overall.quantile(NAME_QUANTILES), when the caller names several clusters.
    """
    if quantiles is None:
        quantiles = overall.quantile(NAME_QUANTILES)

    def q(p):
        return quantiles.loc[p]

    m = profile["monetary"]
    value = "High-value" if m >= q(0.8)["monetary"] else "Mid-value" if m >= q(0.4)["monetary"] else "Low-value"
    one_time = profile["frequency"] <= 1
    occasional = profile["frequency"] <= 2
    if profile["recency_days"] >= q(0.7)["recency_days"]:
        kind = "one-time buyers" if one_time else "occasional buyers" if occasional else "regulars"
        behaviour = f"lapsed {kind}"
    elif one_time and profile["tenure_days"] <= 60:
        behaviour = "newcomers"
    elif one_time:
        behaviour = "one-time buyers"
    elif occasional:
        behaviour = "occasional buyers"
    elif profile["orders_per_30d"] >= q(0.8)["orders_per_30d"]:
        behaviour = "frequent regulars"
    else:
        behaviour = "regulars"
    return f"{value} {behaviour}"


def name_clusters(features: pd.DataFrame, labels: np.ndarray) -> dict:
    """Unique names per cluster; clusters that would share a name are told apart by basket size."""
    overall = features[PERSONA_FEATURES].astype(float)
    prof = overall.groupby(labels).median()
    quantiles = overall.quantile(NAME_QUANTILES)  # once, not per cluster and threshold
    names = {int(c): name_cluster(prof.loc[c], overall, quantiles) for c in prof.index}
    for name in set(names.values()):
        dup = [c for c, n in names.items() if n == name]
        if len(dup) > 1:
            dup.sort(key=lambda c: prof.loc[c, "avg_order_value"], reverse=True)
            for i, c in enumerate(dup):
                tag = "bigger baskets" if i == 0 else "smaller baskets" if i == len(dup) - 1 else f"baskets #{i + 1}"
                names[c] = f"{name} ({tag})"
    return names


@dataclass
class PersonaResult:
    assignments: pd.DataFrame  # customer_id, cluster, persona
    model: PersonaModel
    k: int
    silhouettes: dict
    profile: pd.DataFrame      # per cluster: customers, share, medians
    fit_customers: pd.Series | None = None  # customer ids of the fit sample (None: every customer)


def fit_personas(features: pd.DataFrame, k_min: int = 3, k_max: int = 8, sample_size: int = 3000,
                 max_fit_customers: int = 0) -> PersonaResult:
    """`max_fit_customers` (settings.max_fit_customers; 0 = all): scaler, K-Means and the choice of
    k are fitted on a deterministic customer sample of at most that size; every customer is then
    assigned to its nearest centre."""
    from threadpoolctl import threadpool_limits

    x = prepare(features)
    fit_rows = features
    if max_fit_customers and len(features) > max_fit_customers:
        fit_rows = sample_customers(features, max_fit_customers)
    x_fit = x if fit_rows is features else prepare(fit_rows)
    # One thread: on a few thousand rows OpenMP start-up and contention cost far more than they
    # save (measured 0.05 s vs 2-7 s per k on a busy 2-core machine).
    with threadpool_limits(limits=1):
        k, scores, fits = choose_k(x_fit, k_min, k_max, sample_size)
        pipe = fits[k]
        labels = pipe.named_steps["kmeans"].labels_ if x_fit is x else pipe.predict(x)
    # relabel clusters by descending median monetary so cluster 0 is the most valuable (stable ids)
    med = pd.Series(features["monetary"].astype(float).to_numpy()).groupby(labels).median()
    order = {int(old): new for new, old in enumerate(med.sort_values(ascending=False).index)}
    km = pipe.named_steps["kmeans"]
    km.cluster_centers_ = km.cluster_centers_[[old for old, _ in sorted(order.items(), key=lambda t: t[1])]]
    relabel = np.zeros(max(order) + 1, dtype=int)
    relabel[list(order)] = list(order.values())
    labels = relabel[labels]
    km.labels_ = labels
    names = name_clusters(features, labels)
    model = PersonaModel(pipeline=pipe, features=list(PERSONA_FEATURES), log_features=list(LOG_FEATURES), names=names)
    assign, prof = describe_clusters(features, labels, names)
    fit_customers = None if fit_rows is features else fit_rows["customer_id"]
    return PersonaResult(assign, model, k, scores, prof, fit_customers)


def describe_clusters(features: pd.DataFrame, labels: np.ndarray, names: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(assignments: customer_id, cluster, persona per row of `features`; profile: per cluster that
    has customers, cluster, persona, customers, share and the medians of PERSONA_FEATURES)."""
    labels = np.asarray(labels, dtype=np.int64)  # predict gives int32; the table's cluster is BIGINT either way
    names = {int(c): names.get(int(c), f"cluster {c}") for c in np.unique(labels)}
    assign = pd.DataFrame({"customer_id": features["customer_id"].to_numpy(), "cluster": labels})
    assign["persona"] = assign["cluster"].map(names)
    prof = features[PERSONA_FEATURES].astype(float).groupby(labels).median().add_prefix("median_")
    prof.insert(0, "customers", pd.Series(labels).value_counts().sort_index())
    prof.insert(1, "share", prof["customers"] / len(labels))
    prof.insert(0, "persona", [names[c] for c in prof.index])
    prof.index.name = "cluster"
    return assign, prof.reset_index()
