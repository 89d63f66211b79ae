//! Checks [`MerkleTree`] against trees built by `@openzeppelin/merkle-tree`
//! (see `shared/data/oz/FORMAT.md` next to the vectors file): roots, whole
//! node arrays, leaf positions and proofs must all be equal.
//!
//! Only trees with leaf encoding `["bytes32"]` are checked. The file also
//! holds `["bytes32","uint64"]` trees, whose leaves ABI-encode two words;
//! the node never builds those, so they are skipped on purpose.

use std::path::PathBuf;

use analytics_primitives::merkle::{leaf_hash, verify, MerkleTree};
use analytics_primitives::B256;
use serde_json::{json, Value};

/// Whether `tree` uses the leaf encoding the node uses, `["bytes32"]`.
fn is_bytes32(tree: &Value) -> bool {
    tree["leafEncoding"] == json!(["bytes32"])
}

/// One library tree over `bytes32` values.
struct Vector {
    values: Vec<B256>,
    root: B256,
    nodes: Vec<B256>,
    tree_indices: Vec<usize>,
    proofs: Vec<ProofCase>,
}

/// One proof the library produced for a value index.
struct ProofCase {
    value_index: usize,
    value: B256,
    leaf_hash: B256,
    tree_index: usize,
    proof: Vec<B256>,
}

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/oz/vectors.json")
}

fn load_bytes32_vectors() -> Vec<Vector> {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!("cannot read OpenZeppelin vectors at {}: {err}", path.display())
    });
    let doc: Value = serde_json::from_str(&text).expect("vectors file is JSON");

    let trees = doc["trees"].as_array().expect("`trees` is an array");
    trees.iter().filter(|tree| is_bytes32(tree)).map(parse_vector).collect()
}

fn parse_vector(tree: &Value) -> Vector {
    let values = array(&tree["values"]).iter().map(|v| hash(&v[0])).collect();
    let dump = &tree["dump"];
    Vector {
        values,
        root: hash(&tree["root"]),
        nodes: array(&dump["tree"]).iter().map(hash).collect(),
        tree_indices: array(&dump["values"])
            .iter()
            .map(|v| index(&v["treeIndex"]))
            .collect(),
        proofs: array(&tree["proofs"]).iter().map(parse_proof).collect(),
    }
}

fn parse_proof(case: &Value) -> ProofCase {
    ProofCase {
        value_index: index(&case["valueIndex"]),
        value: hash(&case["value"][0]),
        leaf_hash: hash(&case["leafHash"]),
        tree_index: index(&case["treeIndex"]),
        proof: array(&case["proof"]).iter().map(hash).collect(),
    }
}

fn array(value: &Value) -> &Vec<Value> {
    value.as_array().unwrap_or_else(|| panic!("expected an array, found {value}"))
}

fn hash(value: &Value) -> B256 {
    let text =
        value.as_str().unwrap_or_else(|| panic!("expected a string, found {value}"));
    text.parse().unwrap_or_else(|err| panic!("bad bytes32 {text}: {err}"))
}

fn index(value: &Value) -> usize {
    let n = value.as_u64().unwrap_or_else(|| panic!("expected an index, found {value}"));
    usize::try_from(n).expect("index fits in usize")
}

fn build(vector: &Vector) -> MerkleTree {
    MerkleTree::new(&vector.values).expect("vector trees are not empty")
}

#[test]
fn vectors_cover_every_bytes32_tree_size() {
    let sizes: Vec<usize> =
        load_bytes32_vectors().iter().map(|v| v.values.len()).collect();

    assert_eq!(sizes, [1, 2, 3, 7, 8, 1000]);
}

#[test]
fn roots_node_arrays_and_leaf_positions_match_the_library() {
    for vector in load_bytes32_vectors() {
        let n = vector.values.len();
        let tree = build(&vector);

        assert_eq!(tree.root(), vector.root, "root, n = {n}");
        assert_eq!(tree.nodes(), vector.nodes, "node array, n = {n}");
        let positions: Vec<_> = (0..n).map(|i| tree.tree_index(i).unwrap()).collect();
        assert_eq!(positions, vector.tree_indices, "leaf positions, n = {n}");
    }
}

#[test]
fn proofs_match_the_library_and_verify() {
    for vector in load_bytes32_vectors() {
        let n = vector.values.len();
        let tree = build(&vector);

        for case in &vector.proofs {
            let at = format!("n = {n}, value {}", case.value_index);
            let proof = tree.proof(case.value_index).unwrap();

            assert_eq!(vector.values[case.value_index], case.value, "{at}");
            assert_eq!(leaf_hash(case.value), case.leaf_hash, "{at}");
            assert_eq!(tree.tree_index(case.value_index), Some(case.tree_index), "{at}");
            assert_eq!(proof, case.proof, "{at}");
            assert_eq!(tree.proof_for(case.value), Some(proof), "{at}");
            assert!(verify(vector.root, case.value, &case.proof), "{at}");
        }
    }
}

#[test]
fn every_value_of_every_tree_has_a_verifying_proof() {
    for vector in load_bytes32_vectors() {
        let tree = build(&vector);

        for (i, value) in vector.values.iter().enumerate() {
            let proof = tree.proof(i).unwrap();
            assert!(verify(vector.root, *value, &proof), "n = {}, value {i}", tree.len());
        }
    }
}

#[test]
fn proofs_fail_against_another_trees_root() {
    let vectors = load_bytes32_vectors();

    for (i, vector) in vectors.iter().enumerate() {
        for other in vectors.iter().enumerate().filter(|(j, _)| *j != i) {
            for case in &vector.proofs {
                let verified = verify(other.1.root, case.value, &case.proof);
                assert!(
                    !verified,
                    "value {} of tree {i} in tree {}",
                    case.value_index, other.0
                );
            }
        }
    }
}

#[test]
fn tampered_values_and_proofs_fail() {
    for vector in load_bytes32_vectors() {
        for case in &vector.proofs {
            let at = format!("n = {}, value {}", vector.values.len(), case.value_index);
            let mut value = case.value;
            value.0[0] ^= 0x80;
            assert!(!verify(vector.root, value, &case.proof), "value, {at}");

            if let Some(first) = case.proof.first() {
                let mut proof = case.proof.clone();
                proof[0] = B256::from(first.0.map(|byte| !byte));
                assert!(!verify(vector.root, case.value, &proof), "proof, {at}");
            }
        }
    }
}
