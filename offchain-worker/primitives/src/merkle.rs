//! OpenZeppelin `StandardMerkleTree` over `bytes32` leaves.
//!
//! The tree is the one `@openzeppelin/merkle-tree` (v1, default options)
//! builds with leaf encoding `["bytes32"]`, so its root and proofs check out
//! with OpenZeppelin Contracts' `MerkleProof.verify`:
//! - a leaf is `keccak256(keccak256(value))`: `abi.encode` of one `bytes32`
//!   is the 32 bytes themselves, and hashing twice keeps a leaf preimage from
//!   being 64 bytes long like a pair of inner nodes;
//! - an inner node is `keccak256(min(a, b) || max(a, b))`, so a proof is a
//!   bare list of siblings with no left/right flags;
//! - leaf hashes are sorted ascending and laid out in a flat heap-ordered
//!   array of `2n - 1` nodes, sorted leaf `k` at position `2n - 2 - k` (the
//!   smallest hash last); node `i` has children `2i + 1` and `2i + 2`, and
//!   the root is node 0. Leaves are never padded or duplicated.

use alloy_primitives::{keccak256, B256};

/// Why a tree or a proof cannot be produced.
///
/// None of these is transient: retrying with the same input fails again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// A tree needs at least one value.
    #[error("cannot build a merkle tree from zero values")]
    Empty,
    /// A value index past the end of the values the tree was built from.
    #[error("value index {index} is out of range for a tree of {len} values")]
    IndexOutOfRange {
        /// The requested value index.
        index: usize,
        /// How many values the tree holds.
        len: usize,
    },
}

/// The leaf hash of a `bytes32` value: `keccak256(keccak256(value))`.
pub fn leaf_hash(value: B256) -> B256 {
    keccak256(keccak256(value))
}

/// The inner node over two children: `keccak256` of the two concatenated,
/// smaller first (compared as bytes, i.e. as big-endian `uint256`).
///
/// The result does not depend on the order of the arguments.
pub fn hash_pair(a: B256, b: B256) -> B256 {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    let mut preimage = [0u8; 64];
    preimage[..32].copy_from_slice(low.as_slice());
    preimage[32..].copy_from_slice(high.as_slice());
    keccak256(preimage)
}

/// The root implied by `leaf` (a leaf hash, not a value) and its `proof`:
/// the leaf folded with each sibling in turn through [`hash_pair`].
pub fn process_proof(leaf: B256, proof: &[B256]) -> B256 {
    proof.iter().fold(leaf, |node, sibling| hash_pair(node, *sibling))
}

/// Whether `proof` shows that `value` is a leaf of the tree with `root`.
///
/// This is what `MerkleProof.verify(proof, root, leafHash(value))` computes
/// on chain.
pub fn verify(root: B256, value: B256, proof: &[B256]) -> bool {
    process_proof(leaf_hash(value), proof) == root
}

/// A `StandardMerkleTree` built from `bytes32` values, kept whole so that a
/// proof can be read for any value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    /// The flat heap-ordered node array; the root is `nodes[0]`.
    nodes: Vec<B256>,
    /// The values in the order they were given.
    values: Vec<B256>,
    /// For each value index, the position of its leaf in `nodes`.
    tree_indices: Vec<usize>,
}

impl MerkleTree {
    /// Builds the tree over `values`, taken in order: value index `i` below
    /// is `values[i]`. Repeated values are allowed and each gets its own
    /// leaf.
    ///
    /// Fails with [`MerkleError::Empty`] when `values` is empty.
    pub fn new(values: &[B256]) -> Result<Self, MerkleError> {
        if values.is_empty() {
            return Err(MerkleError::Empty);
        }

        let (mut nodes, tree_indices) = place_sorted_leaves(values);
        fill_inner_nodes(&mut nodes, values.len());

        Ok(Self { nodes, values: values.to_vec(), tree_indices })
    }

    /// The root, as anchored on chain. For one value it is that value's
    /// leaf hash.
    pub fn root(&self) -> B256 {
        self.nodes[0]
    }

    /// How many values (and leaves) the tree holds; at least one.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Always `false`: a tree is never built from zero values.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values the tree was built from, in the order given.
    pub fn values(&self) -> &[B256] {
        &self.values
    }

    /// The flat node array (`2n - 1` hashes, root first), as the library's
    /// `dump().tree` holds it.
    pub fn nodes(&self) -> &[B256] {
        &self.nodes
    }

    /// The position in [`Self::nodes`] of the leaf for value `index`, or
    /// `None` past the end.
    pub fn tree_index(&self, index: usize) -> Option<usize> {
        self.tree_indices.get(index).copied()
    }

    /// The proof for value `index`: the sibling hashes from its leaf up to,
    /// not including, the root. Empty for a one-value tree.
    ///
    /// For a repeated value the proof is for that occurrence's own leaf.
    pub fn proof(&self, index: usize) -> Result<Vec<B256>, MerkleError> {
        let leaf = self
            .tree_index(index)
            .ok_or(MerkleError::IndexOutOfRange { index, len: self.len() })?;
        Ok(self.proof_from(leaf))
    }

    /// The proof for the first occurrence of `value`, or `None` when the
    /// tree does not hold it.
    pub fn proof_for(&self, value: B256) -> Option<Vec<B256>> {
        let index = self.values.iter().position(|v| *v == value)?;
        Some(self.proof_from(self.tree_indices[index]))
    }

    fn proof_from(&self, mut node: usize) -> Vec<B256> {
        let mut proof = Vec::new();
        while node > 0 {
            proof.push(self.nodes[sibling(node)]);
            node = parent(node);
        }
        proof
    }
}

/// Allocates the `2n - 1` node array with the leaf hashes of `values` in
/// place and returns it with each value's leaf position.
///
/// Leaves are sorted by hash with a stable sort, so equal hashes keep input
/// order as in the library; sorted leaf `k` goes to `2n - 2 - k`.
fn place_sorted_leaves(values: &[B256]) -> (Vec<B256>, Vec<usize>) {
    let mut leaves: Vec<(B256, usize)> =
        values.iter().enumerate().map(|(i, value)| (leaf_hash(*value), i)).collect();
    leaves.sort_by_key(|&(hash, _)| hash);

    let last = 2 * values.len() - 2;
    let mut nodes = vec![B256::ZERO; last + 1];
    let mut tree_indices = vec![0; values.len()];
    for (k, (hash, value_index)) in leaves.into_iter().enumerate() {
        nodes[last - k] = hash;
        tree_indices[value_index] = last - k;
    }
    (nodes, tree_indices)
}

/// Computes the `leaves - 1` inner nodes, from the last up to the root, each
/// over its two children.
fn fill_inner_nodes(nodes: &mut [B256], leaves: usize) {
    for i in (0..leaves - 1).rev() {
        nodes[i] = hash_pair(nodes[2 * i + 1], nodes[2 * i + 2]);
    }
}

/// The other child of `node`'s parent; `node` must not be the root.
fn sibling(node: usize) -> usize {
    if node.is_multiple_of(2) {
        node - 1
    } else {
        node + 1
    }
}

/// The parent of `node`; `node` must not be the root.
fn parent(node: usize) -> usize {
    (node - 1) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(n: u8) -> B256 {
        B256::repeat_byte(n)
    }

    #[test]
    fn one_value_tree_has_the_leaf_as_root_and_an_empty_proof() {
        let tree = MerkleTree::new(&[value(7)]).unwrap();

        assert_eq!(tree.root(), leaf_hash(value(7)));
        assert_eq!(tree.nodes(), [leaf_hash(value(7))]);
        assert_eq!(tree.len(), 1);
        assert_eq!(tree.proof(0).unwrap(), Vec::<B256>::new());
        assert!(verify(tree.root(), value(7), &[]));
    }

    #[test]
    fn two_value_tree_puts_the_smaller_leaf_last() {
        let (a, b) = (leaf_hash(value(1)), leaf_hash(value(2)));
        let (low, high) = if a < b { (a, b) } else { (b, a) };
        let tree = MerkleTree::new(&[value(1), value(2)]).unwrap();

        assert_eq!(tree.nodes(), [hash_pair(a, b), high, low]);
        assert_eq!(tree.proof(0).unwrap(), [b]);
        assert_eq!(tree.proof(1).unwrap(), [a]);
    }

    #[test]
    fn every_proof_verifies_for_assorted_sizes() {
        for n in [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 33] {
            let values: Vec<B256> = (0..n).map(value).collect();
            let tree = MerkleTree::new(&values).unwrap();

            assert_eq!(tree.nodes().len(), 2 * values.len() - 1, "n = {n}");
            for (i, v) in values.iter().enumerate() {
                let proof = tree.proof(i).unwrap();
                assert!(verify(tree.root(), *v, &proof), "n = {n}, value {i}");
                assert_eq!(tree.proof_for(*v), Some(proof), "n = {n}, value {i}");
            }
        }
    }

    #[test]
    fn repeated_values_each_get_their_own_leaf_and_proof() {
        let values = [value(5), value(9), value(5), value(5)];
        let tree = MerkleTree::new(&values).unwrap();

        let mut positions: Vec<usize> =
            (0..values.len()).map(|i| tree.tree_index(i).unwrap()).collect();
        positions.sort_unstable();
        positions.dedup();
        assert_eq!(positions.len(), values.len());

        for (i, v) in values.iter().enumerate() {
            let proof = tree.proof(i).unwrap();
            let leaf = tree.tree_index(i).unwrap();
            assert_eq!(tree.nodes()[leaf], leaf_hash(*v));
            assert!(verify(tree.root(), *v, &proof), "value {i}");
        }
        assert_eq!(tree.proof_for(value(5)), Some(tree.proof(0).unwrap()));
    }

    #[test]
    fn equal_leaves_keep_input_order_like_a_stable_sort() {
        let tree = MerkleTree::new(&[value(3), value(3), value(3)]).unwrap();

        let positions: Vec<_> = (0..3).map(|i| tree.tree_index(i)).collect();
        assert_eq!(positions, [Some(4), Some(3), Some(2)]);
    }

    #[test]
    fn bad_inputs_are_refused() {
        let tree = MerkleTree::new(&[value(1), value(2)]).unwrap();

        assert_eq!(MerkleTree::new(&[]), Err(MerkleError::Empty));
        assert_eq!(tree.proof(2), Err(MerkleError::IndexOutOfRange { index: 2, len: 2 }));
        assert_eq!(tree.proof_for(value(3)), None);
    }

    #[test]
    fn wrong_value_root_or_proof_does_not_verify() {
        let values: Vec<B256> = (0..5).map(value).collect();
        let tree = MerkleTree::new(&values).unwrap();
        let proof = tree.proof(2).unwrap();
        let mut bent = proof.clone();
        bent[0].0[31] ^= 1;

        let cases = [
            (tree.root(), value(2), &proof, true),
            (tree.root(), value(9), &proof, false),
            (leaf_hash(value(2)), value(2), &proof, false),
            (tree.root(), value(2), &bent, false),
            (tree.root(), value(2), &proof[..proof.len() - 1].to_vec(), false),
        ];
        for (i, (root, v, proof, expected)) in cases.into_iter().enumerate() {
            assert_eq!(verify(root, v, proof), expected, "case {i}");
        }
    }

    #[test]
    fn hash_pair_is_commutative_and_sorts_its_inputs() {
        let (a, b) = (value(1), value(2));
        let mut preimage = a.to_vec();
        preimage.extend_from_slice(b.as_slice());

        assert_eq!(hash_pair(a, b), hash_pair(b, a));
        assert_eq!(hash_pair(b, a), keccak256(&preimage));
    }
}
