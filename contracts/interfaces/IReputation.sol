// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IReputation
/// @notice The part of Reputation that ModelLedger calls: folding one committed round's outcomes into
///         per-node reputations, with the errors and events that call can produce.
/// @dev Implemented by `Reputation`; `ModelLedger` holds it as `IReputation`.
interface IReputation {
    /// @notice A score was above SCALE.
    error ScoreOutOfRange(address node, uint256 score);
    /// @notice `nodes` and `scores` had different lengths.
    error LengthMismatch(uint256 nodes, uint256 scores);
    /// @notice A scored node is not Active in the registry.
    error InactiveParticipant(address node);

    /// @notice A node's reputation changed (enrollment, reinstatement or a round outcome).
    event ReputationUpdated(address indexed node, uint256 value);
    /// @notice A selected node did not answer in time; its reputation decayed.
    event RoundMissed(address indexed node);
    /// @notice A node's reply was rejected as malformed or as an outlier; it was penalized.
    event Penalized(address indexed node);
    /// @notice A node's reputation fell below the threshold and it was suspended.
    event AutoSuspended(address indexed node, uint256 value);

    /// @notice Whether a node is Active (the registry's status, mirrored here).
    /// @param node The node.
    /// @return True if it may take part in rounds.
    function isEligible(address node) external view returns (bool);

    /// @notice Fold one round's outcomes into reputations; scored participants must be Active, else
    ///         the call reverts with InactiveParticipant(node).
    /// @param nodes Scored participants of the round.
    /// @param scores Their scores in SCALE units (1e6 == 1.0), same order.
    /// @param missed Nodes selected but without an answer in time.
    /// @param penalized Nodes whose reply was rejected as malformed or as an outlier.
    function recordRound(
        address[] calldata nodes,
        uint256[] calldata scores,
        address[] calldata missed,
        address[] calldata penalized
    ) external;
}
