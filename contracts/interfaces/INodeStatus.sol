// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title INodeStatus
/// @notice The part of NodeRegistry that ReputationCheckpoints reads: whether a node is Active, and since
///         which block.
/// @dev Implemented by `NodeRegistry`.
interface INodeStatus {
    /// @notice Whether the node is registered and Active.
    /// @param node Address of the node.
    /// @return True if Active.
    function isActive(address node) external view returns (bool);

    /// @notice Block number of the node's last activation (a registrar's approval, or open
    ///         registration); 0 if it was never Active. A suspension recorded by a reputation
    ///         checkpoint that folded only rounds committed before this block predates the
    ///         registrar's decision and is not applied (ReputationCheckpoints.applySuspension).
    /// @param node Address of the node.
    /// @return The block number.
    function activatedAt(address node) external view returns (uint256);
}
