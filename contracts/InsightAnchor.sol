// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title InsightAnchor
/// @notice Anchors the Merkle roots of insight batches on chain. Each batch
/// names the root anchored before it, so the roots form a hash chain and a
/// missing or reordered batch is visible to anyone reading the contract.
/// @dev Trees are OpenZeppelin `StandardMerkleTree`s with leaf encoding
/// `["bytes32"]`: a leaf is `keccak256(bytes.concat(keccak256(abi.encode(h))))`
/// for an insight hash `h`, and inner nodes hash their two children in sorted
/// order. A proof that verifies with the OpenZeppelin JavaScript library
/// or with `MerkleProof.sol` verifies with `verifyInsight` too.
///
/// Storage layout (fixed; auditors read it with `eth_getProof`, and
/// `build.mjs` refuses to write an artifact whose layout differs):
///
/// | slot | variable     | type                           |
/// | ---- | ------------ | ------------------------------ |
/// | 0    | `lastRoot`   | `bytes32`                      |
/// | 1    | `anchors`    | `mapping(bytes32 => Anchor)`   |
/// | 2    | `isAnchorer` | `mapping(address => bool)`     |
/// | 3    | `owner`      | `address`                      |
///
/// The record of `root` lives in the single slot
/// `keccak256(abi.encode(root, uint256(1)))`. Its 32-byte word holds, from
/// the least significant end: `batchId` (bits 0-63), `blockNumber`
/// (64-127), `timestamp` (128-191) and `leafCount` (192-255). A zero word
/// means the root was never anchored.
///
/// The batch counter has no slot of its own: it is the `batchId` of the
/// record of `lastRoot`. Anchoring therefore writes one new slot (the record)
/// and updates one (`lastRoot`). A `batchId => root` index is left out on
/// purpose: it would cost a second new slot per batch, and the `Anchored`
/// event, indexed by batch id, already serves that lookup.
contract InsightAnchor {
    /// @notice What the chain recorded when a root was anchored. Packed into
    /// one storage slot.
    /// @param batchId Position of the batch in the chain of roots, from 1.
    /// @param blockNumber Number of the block that anchored the root.
    /// @param timestamp Timestamp of that block, in seconds since the epoch.
    /// @param leafCount Number of leaves (insights) in the batch's tree.
    struct Anchor {
        uint64 batchId;
        uint64 blockNumber;
        uint64 timestamp;
        uint64 leafCount;
    }

    /// @notice The root anchored most recently; zero before the first batch.
    bytes32 public lastRoot;

    /// @notice Record of every anchored root, keyed by root.
    mapping(bytes32 root => Anchor record) private anchors;

    /// @notice Whether an account may call `anchor`.
    mapping(address account => bool allowed) public isAnchorer;

    /// @notice The deployer: the only account that may change anchorers.
    address public owner;

    /// @notice A batch root was anchored.
    /// @param batchId Position of the batch in the chain, from 1.
    /// @param root Merkle root of the batch.
    /// @param prevRoot Root of the previous batch; zero for the first.
    /// @param leafCount Number of leaves in the batch's tree.
    /// @param blockNumber Number of the anchoring block.
    /// @param timestamp Timestamp of the anchoring block, in seconds.
    event Anchored(
        uint64 indexed batchId,
        bytes32 indexed root,
        bytes32 prevRoot,
        uint64 leafCount,
        uint64 blockNumber,
        uint64 timestamp
    );

    /// @notice An account was authorised or revoked as an anchorer.
    /// @param account The account concerned.
    /// @param allowed True when authorised, false when revoked.
    event AnchorerSet(address indexed account, bool allowed);

    /// @notice The caller is not the owner.
    /// @param caller The account that called.
    error NotOwner(address caller);

    /// @notice The caller is not an authorised anchorer.
    /// @param caller The account that called.
    error NotAnchorer(address caller);

    /// @notice `prevRoot` is not the root anchored last.
    /// @param expected The current `lastRoot`.
    /// @param given The `prevRoot` passed by the caller.
    error PrevRootMismatch(bytes32 expected, bytes32 given);

    /// @notice The zero root cannot be anchored: it marks "no batch".
    error ZeroRoot();

    /// @notice A batch must contain at least one leaf.
    error EmptyBatch();

    /// @notice The root was anchored before, as batch `batchId`.
    /// @param root The root passed by the caller.
    /// @param batchId The batch that already anchored it.
    error RootAlreadyAnchored(bytes32 root, uint64 batchId);

    /// @notice The zero address cannot be made an anchorer.
    error ZeroAddress();

    /// @notice Makes the deployer the owner and its first anchorer.
    constructor() {
        owner = msg.sender;
        isAnchorer[msg.sender] = true;
        emit AnchorerSet(msg.sender, true);
    }

    /// @notice Authorises or revokes an anchorer. Owner only.
    /// @param account The account to change.
    /// @param allowed True to authorise, false to revoke.
    function setAnchorer(address account, bool allowed) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        if (account == address(0)) revert ZeroAddress();
        isAnchorer[account] = allowed;
        emit AnchorerSet(account, allowed);
    }

    /// @notice Anchors the root of the next batch. Anchorers only.
    /// @dev Reverts with `NotAnchorer`, `ZeroRoot`, `EmptyBatch`,
    /// `PrevRootMismatch` or `RootAlreadyAnchored`, checked in that order.
    /// Block number and timestamp are stored as uint64, which holds any value
    /// a real chain will reach.
    /// @param root Merkle root of the batch; nonzero and never anchored.
    /// @param leafCount Number of leaves in the batch's tree; nonzero.
    /// @param prevRoot Must equal `lastRoot` (zero for the first batch).
    function anchor(bytes32 root, uint64 leafCount, bytes32 prevRoot) external {
        if (!isAnchorer[msg.sender]) revert NotAnchorer(msg.sender);
        if (root == bytes32(0)) revert ZeroRoot();
        if (leafCount == 0) revert EmptyBatch();

        bytes32 last = lastRoot;
        if (prevRoot != last) revert PrevRootMismatch(last, prevRoot);

        uint64 existing = anchors[root].batchId;
        if (existing != 0) revert RootAlreadyAnchored(root, existing);

        // The record of bytes32(0) is never written, so the first batch
        // skips the read and gets id 1.
        uint64 batchId = 1;
        if (last != bytes32(0)) batchId = anchors[last].batchId + 1;

        uint64 blockNumber = uint64(block.number);
        uint64 timestamp = uint64(block.timestamp);
        anchors[root] = Anchor(batchId, blockNumber, timestamp, leafCount);
        lastRoot = root;

        emit Anchored(batchId, root, prevRoot, leafCount, blockNumber, timestamp);
    }

    /// @notice Number of batches anchored so far.
    /// @return count The batch id of `lastRoot`; zero before the first batch.
    function batchCount() external view returns (uint64 count) {
        return anchors[lastRoot].batchId;
    }

    /// @notice The record of an anchored root; all zeros when unknown.
    /// @param root The Merkle root to look up.
    /// @return batchId Position of the batch in the chain, from 1.
    /// @return blockNumber Number of the anchoring block.
    /// @return timestamp Timestamp of the anchoring block, in seconds.
    /// @return leafCount Number of leaves in the batch's tree.
    function anchorOf(bytes32 root)
        external
        view
        returns (
            uint64 batchId,
            uint64 blockNumber,
            uint64 timestamp,
            uint64 leafCount
        )
    {
        Anchor memory a = anchors[root];
        return (a.batchId, a.blockNumber, a.timestamp, a.leafCount);
    }

    /// @notice Whether an insight belongs to an anchored batch.
    /// @param root The batch root the proof leads to.
    /// @param proof Sibling hashes from the leaf up to the root, as produced
    /// by `StandardMerkleTree.getProof`.
    /// @param insightHash The insight's canonical hash (not the leaf).
    /// @return ok True only if `root` is anchored and the proof leads from
    /// the insight's leaf to `root`.
    function verifyInsight(
        bytes32 root,
        bytes32[] calldata proof,
        bytes32 insightHash
    ) external view returns (bool ok) {
        if (anchors[root].batchId == 0) return false;

        bytes32 node = leafOf(insightHash);
        for (uint256 i = 0; i < proof.length; ++i) {
            node = _hashPair(node, proof[i]);
        }
        return node == root;
    }

    /// @notice The Merkle leaf of an insight hash, as `StandardMerkleTree`
    /// with leaf encoding `["bytes32"]` computes it.
    /// @param insightHash The insight's canonical hash.
    /// @return leaf `keccak256(bytes.concat(keccak256(abi.encode(insightHash))))`.
    function leafOf(bytes32 insightHash) public pure returns (bytes32 leaf) {
        return keccak256(bytes.concat(keccak256(abi.encode(insightHash))));
    }

    /// @dev Hash of two sibling nodes, smaller one first, so a proof does not
    /// need to say on which side each sibling sits.
    function _hashPair(bytes32 a, bytes32 b) private pure returns (bytes32) {
        return a < b
            ? keccak256(abi.encode(a, b))
            : keccak256(abi.encode(b, a));
    }
}
