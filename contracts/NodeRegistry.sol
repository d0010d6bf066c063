// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {INodeStatus} from "./interfaces/INodeStatus.sol";
import {IStatusHook} from "./interfaces/IStatusHook.sol";
import {ISuspender} from "./interfaces/ISuspender.sol";

/// @title NodeRegistry
/// @notice Who may take part in a federation. Nodes are identified by their Ethereum address,
///         apply with their declared capacity, and are approved, suspended or revoked by a registrar.
/// @dev One concern: node identity and status. Reputation lives in `Reputation`, rounds in `ModelLedger`.
///      Implements ISuspender, through which Reputation suspends nodes; pushes every change of Active
///      status to an IStatusHook (Reputation).
contract NodeRegistry is AccessControl, ISuspender, INodeStatus {
    /// @notice Role allowed to approve, suspend and revoke nodes.
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");
    /// @notice Role allowed to suspend nodes automatically (granted to the Reputation contract).
    bytes32 public constant SUSPENDER_ROLE = keccak256("SUSPENDER_ROLE");

    /// @notice Lifecycle of a node. `None` means the address never applied.
    enum Status {
        None,
        Pending,
        Active,
        Suspended,
        Revoked
    }

    /// @notice Declared capacity of a node, reported when it applies.
    struct Capacity {
        uint16 cores;
        uint32 memoryMb;
        uint32 samplesPerSec;
    }

    /// @notice Everything the registry knows of one node; packed so status, capacity and the block of
    ///         its last activation share a slot.
    struct Node {
        Status status;
        uint16 cores;
        uint32 memoryMb;
        uint32 samplesPerSec;
        uint64 appliedAt;
        uint64 activatedAt;
        string endpoint;
    }

    mapping(address => Node) private _nodes;
    address[] private _addresses;
    /// @notice Contract told about every change of Active status (the Reputation contract), or zero.
    ///         Set by the constructor only. Kept in storage rather than immutable so the gas of a
    ///         suspension inside a round's commit stays as measured (docs/gas.md).
    IStatusHook public statusHook;
    /// @notice Whether nodes may join without a registrar by submitting proof of work.
    bool public openRegistration;
    /// @notice A proof is valid if keccak256(chain id, registry, node, nonce) < powTarget.
    uint256 public powTarget;

    /// @notice The address has already applied and is not in a state that allows applying again.
    error AlreadyRegistered(address node, Status status);
    /// @notice The address never applied.
    error UnknownNode(address node);
    /// @notice The requested status change is not allowed from the node's current status.
    error InvalidTransition(address node, Status from, Status to);
    /// @notice Declared capacity must name at least one core.
    error InvalidCapacity();
    /// @notice Open registration (proof of work) is switched off.
    error RegistrationClosed();
    /// @notice The proof's hash is not below the target.
    error InsufficientWork(bytes32 workHash, uint256 target);

    /// @notice A node registered (or re-registered after a suspension) with its declared capacity.
    event NodeApplied(address indexed node, uint16 cores, uint32 memoryMb, uint32 samplesPerSec, string endpoint);
    /// @notice The status hook was set (once, by the constructor).
    event StatusHookSet(address indexed hook);
    /// @notice Open registration was switched on or off, or its target changed.
    event OpenRegistrationChanged(bool open, uint256 target);
    /// @notice A node joined with a valid proof of work.
    event WorkAccepted(address indexed node, uint256 nonce, bytes32 workHash);
    /// @notice A node's status changed.
    event NodeStatusChanged(address indexed node, Status from, Status to, address indexed by);

    /// @notice Everything is wired here, in the transaction that creates the registry: no later wiring
    ///         transaction exists that an outsider's registration could front-run (a hook set after a
    ///         node registered would miss its status), and no setter exists to change the hook later.
    /// @dev The deployer passes the addresses its next contract creations will have (CREATE addresses
    ///      follow from its nonce), so the hook and the suspenders may not have code yet; until the
    ///      hook has code, any change of Active status reverts (a registration alone does not call it).
    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants roles, sets open registration).
    /// @param registrar Receives REGISTRAR_ROLE (approves, suspends and revokes nodes).
    /// @param hook Told about every change of Active status (the Reputation contract), or zero for none.
    /// @param suspenders Receive SUSPENDER_ROLE (the Reputation and ReputationCheckpoints contracts).
    constructor(address admin, address registrar, IStatusHook hook, address[] memory suspenders) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(REGISTRAR_ROLE, registrar);
        for (uint256 i = 0; i < suspenders.length; ++i) {
            _grantRole(SUSPENDER_ROLE, suspenders[i]);
        }
        statusHook = hook;
        emit StatusHookSet(address(hook));
    }

    /// @notice Apply to join, declaring capacity. The caller's address is the node's identity.
    /// @dev A suspended node may re-apply to update its capacity; it stays suspended until approved.
    /// @param capacity Declared cores, memory (MB) and measured training throughput (samples/s).
    /// @param endpoint Optional contact endpoint (may be empty).
    function register(Capacity calldata capacity, string calldata endpoint) external {
        if (capacity.cores == 0) revert InvalidCapacity();
        Node storage n = _nodes[msg.sender];
        Status previous = n.status;
        if (previous == Status.Active || previous == Status.Revoked || previous == Status.Pending) {
            revert AlreadyRegistered(msg.sender, previous);
        }
        if (previous == Status.None) {
            _addresses.push(msg.sender);
            n.status = Status.Pending;
            emit NodeStatusChanged(msg.sender, Status.None, Status.Pending, msg.sender);
        }
        _recordApplication(n, capacity, endpoint);
    }

    /// @notice Join without a registrar by proof of work (open registration only): the node becomes
    ///         Active at once. The proof binds chain id, this registry and the sender, so a nonce mined
    ///         for another address, registry or chain never verifies, and an address joins only once.
    /// @param capacity Declared cores, memory (MB) and measured training throughput (samples/s).
    /// @param endpoint Optional contact endpoint (may be empty).
    /// @param nonce A value with keccak256(abi.encode(chainid, registry, sender, nonce)) < powTarget.
    function registerWithWork(Capacity calldata capacity, string calldata endpoint, uint256 nonce) external {
        if (!openRegistration) revert RegistrationClosed();
        if (capacity.cores == 0) revert InvalidCapacity();
        Node storage n = _nodes[msg.sender];
        if (n.status != Status.None) revert AlreadyRegistered(msg.sender, n.status);
        bytes32 work = workHash(msg.sender, nonce);
        if (uint256(work) >= powTarget) revert InsufficientWork(work, powTarget);
        _addresses.push(msg.sender);
        _recordApplication(n, capacity, endpoint);
        emit WorkAccepted(msg.sender, nonce, work);
        _setStatus(msg.sender, Status.None, Status.Active);
    }

    /// @notice The proof-of-work hash of a nonce for a node on this registry and chain.
    /// @param node Address of the node.
    /// @param nonce Candidate nonce.
    /// @return keccak256(abi.encode(block.chainid, address(this), node, nonce)).
    function workHash(address node, uint256 nonce) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), node, nonce));
    }

    /// @notice Switch open registration (proof of work) on or off and set its target.
    /// @dev Expected hashes to find a proof = 2^256 / target.
    /// @param open Whether registerWithWork is allowed.
    /// @param target Proofs must hash below this value.
    function setOpenRegistration(bool open, uint256 target) external onlyRole(DEFAULT_ADMIN_ROLE) {
        openRegistration = open;
        powTarget = target;
        emit OpenRegistrationChanged(open, target);
    }

    /// @notice Make a pending or suspended node active.
    /// @param node Address of the node.
    function approve(address node) external onlyRole(REGISTRAR_ROLE) {
        Status from = _nodes[node].status;
        if (from != Status.Pending && from != Status.Suspended) revert InvalidTransition(node, from, Status.Active);
        _setStatus(node, from, Status.Active);
    }

    /// @inheritdoc ISuspender
    /// @dev Allowed to REGISTRAR_ROLE and SUSPENDER_ROLE (the Reputation contract).
    function suspend(address node) external override {
        if (!hasRole(REGISTRAR_ROLE, msg.sender) && !hasRole(SUSPENDER_ROLE, msg.sender)) {
            revert AccessControlUnauthorizedAccount(msg.sender, REGISTRAR_ROLE);
        }
        Status from = _nodes[node].status;
        if (from != Status.Active && from != Status.Pending) revert InvalidTransition(node, from, Status.Suspended);
        _setStatus(node, from, Status.Suspended);
    }

    /// @notice Revoke a node for good; a revoked address can never become active again.
    /// @param node Address of the node.
    function revoke(address node) external onlyRole(REGISTRAR_ROLE) {
        Status from = _nodes[node].status;
        if (from == Status.None) revert UnknownNode(node);
        if (from == Status.Revoked) revert InvalidTransition(node, from, Status.Revoked);
        _setStatus(node, from, Status.Revoked);
    }

    /// @notice Whether the node may currently take part.
    /// @param node Address of the node.
    /// @return True if the node's status is Active.
    function isActive(address node) external view returns (bool) {
        return _nodes[node].status == Status.Active;
    }

    /// @inheritdoc INodeStatus
    function activatedAt(address node) external view returns (uint256) {
        return _nodes[node].activatedAt;
    }

    /// @notice Status of a node.
    /// @param node Address of the node.
    /// @return The node's status (None if it never applied).
    function statusOf(address node) external view returns (Status) {
        return _nodes[node].status;
    }

    /// @notice Status of many nodes in one call, so a coordinator checks a round's candidates with one
    ///         request however many there are (same values as `statusOf`).
    /// @param nodes Addresses of the nodes.
    /// @return statuses Status of each node (None if it never applied), in the order given.
    function statusesOf(address[] calldata nodes) external view returns (Status[] memory statuses) {
        statuses = new Status[](nodes.length);
        for (uint256 i = 0; i < nodes.length; ++i) {
            statuses[i] = _nodes[nodes[i]].status;
        }
    }

    /// @notice Full record of a node.
    /// @param node Address of the node.
    /// @return status Current status.
    /// @return capacity Declared capacity.
    /// @return appliedAt Timestamp of the latest application.
    /// @return endpoint Declared endpoint.
    function getNode(address node)
        external
        view
        returns (Status status, Capacity memory capacity, uint64 appliedAt, string memory endpoint)
    {
        Node storage n = _nodes[node];
        return (n.status, Capacity(n.cores, n.memoryMb, n.samplesPerSec), n.appliedAt, n.endpoint);
    }

    /// @notice Number of addresses that ever applied.
    /// @return Count of known nodes.
    function nodeCount() external view returns (uint256) {
        return _addresses.length;
    }

    /// @notice A page of known nodes, in order of first application.
    /// @param offset Index of the first node to return.
    /// @param limit Maximum number of nodes to return.
    /// @return nodes Addresses in the page.
    /// @return statuses Status of each address.
    function listNodes(uint256 offset, uint256 limit)
        external
        view
        returns (address[] memory nodes, Status[] memory statuses)
    {
        uint256 total = _addresses.length;
        uint256 end = offset >= total ? offset : (limit > total - offset ? total : offset + limit);
        uint256 count = end - offset;
        nodes = new address[](count);
        statuses = new Status[](count);
        for (uint256 i = 0; i < count; ++i) {
            address a = _addresses[offset + i];
            nodes[i] = a;
            statuses[i] = _nodes[a].status;
        }
    }

    /// @dev Store a node's declared capacity and endpoint with the application time; emits NodeApplied.
    function _recordApplication(Node storage n, Capacity calldata capacity, string calldata endpoint) private {
        n.cores = capacity.cores;
        n.memoryMb = capacity.memoryMb;
        n.samplesPerSec = capacity.samplesPerSec;
        n.appliedAt = uint64(block.timestamp);
        n.endpoint = endpoint;
        emit NodeApplied(msg.sender, capacity.cores, capacity.memoryMb, capacity.samplesPerSec, endpoint);
    }

    /// @dev The only writer of a node's status: emits NodeStatusChanged and tells the status hook when
    ///      the node becomes or stops being Active.
    ///      Records the block of every activation (`activatedAt`), in the slot the status write touches.
    function _setStatus(address node, Status from, Status to) private {
        Node storage n = _nodes[node];
        n.status = to;
        if (to == Status.Active) n.activatedAt = uint64(block.number);
        emit NodeStatusChanged(node, from, to, msg.sender);
        bool wasActive = from == Status.Active;
        bool isNowActive = to == Status.Active;
        if (wasActive != isNowActive && address(statusHook) != address(0)) {
            statusHook.statusChanged(node, isNowActive);
        }
    }
}
