// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title INodeStatus
/// @notice The part of NodeRegistry that ReputationCheckpoints reads: whether a node is Active.
/// @dev Implemented by `NodeRegistry`.
interface INodeStatus {
    /// @notice Whether the node is registered and Active.
    /// @param node Address of the node.
    /// @return True if Active.
    function isActive(address node) external view returns (bool);
}
